"""Operator tools: what this machine can run (doctor) and how fast (bench)."""
