#!/usr/bin/env bash
# Build here, before a GPU session, what benchmarks/gpu.sh measures there, and stage it in parts: the demo cohort
# (its held-out cases are the parity cohort), the demo's fp32 model and its fp16 variant trained together (each
# with its own bands and the fp16 model's check against fp32), and the wheels for the device image.
# About 8 minutes on 2 cores. Then follow the device calls it prints (benchmarks/README.md, "GPU").
#   bash benchmarks/gpu_prepare.sh [WORKDIR]
set -euo pipefail
work=${1:-${TMPDIR:-/tmp}/netorigin-gpu}
cd "$(dirname "$0")/.."
[ -f "$work/demo/cohort/test/manifest.csv" ] || netorigin demo -o "$work/demo" --quiet
[ -f "$work/models/netorigin-fp16.onnx" ] || netorigin train "$work/demo/cohort/train/manifest.csv" \
  --weights-kind random --demo --precision fp16 -o "$work/models" --quiet
python benchmarks/gpu_stage.py -m "$work/models/netorigin.onnx" -m "$work/models/netorigin-fp16.onnx" \
  --manifest "$work/demo/cohort/test/manifest.csv" --out .gpu-stage
