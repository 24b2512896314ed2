"""Slide cases (seed 000): slides, tumour regions, seeded patch sampling, the predictor and its verdict rule."""
