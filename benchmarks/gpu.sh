#!/usr/bin/env bash
# The GPU measurements in one run on a fresh device machine (no package registry there): unpack the payload that
# benchmarks/gpu_stage.py staged (its parts copied to STAGE/p1 … STAGE/pN by earlier calls), install its wheels,
# then benchmarks/gpu.py writes $OUT/gpu.json.
#   bash benchmarks/gpu.sh STAGE [gpu.py options …]      (the tests dry-run it on the CPU with --device cpu)
set -euo pipefail
stage=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
out=${OUT:?set OUT to the folder for gpu.json}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== host"
$python --version
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>/dev/null || true

echo "== payload"
parts=$(ls -d "$stage"/p* | sort -V | sed 's|$|/part|')
cat $parts > "$work/payload.tar"
echo "$(cat "$stage/p1/SHA256")  $work/payload.tar" | sha256sum -c --quiet
tar xf "$work/payload.tar" -C "$work"
payload=$work/payload

if ls "$payload"/wheels/*.whl >/dev/null 2>&1; then
  # The image's own onnxruntime is the CPU build; both installed overwrite each other (netorigin refuses that).
  $python -m pip uninstall -q -y onnxruntime 2>/dev/null || true
  if $python -c "import importlib.metadata as m; m.version('onnxruntime')" 2>/dev/null; then
    echo "the image's onnxruntime could not be removed; onnxruntime-gpu cannot be used beside it" >&2; exit 1
  fi
  $python -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$payload"/wheels/*.whl
  export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! $python -c "import netorigin.runtime" 2>/dev/null; then
  # Not installed there: the checkout's folders under the package names that pyproject.toml maps them to.
  mkdir -p "$work/pkg/netorigin"
  for sub in runtime export calibration; do ln -s "$here/$sub" "$work/pkg/netorigin/$sub"; done
  export PYTHONPATH="$work/pkg${PYTHONPATH:+:$PYTHONPATH}"
fi

echo "== measure"
models=$(ls "$payload"/models/*.onnx | sort -V)
model_args=()
for m in $models; do model_args+=(-m "$m"); done
$python "$here/benchmarks/gpu.py" "${model_args[@]}" --manifest "$payload/cohort/manifest.csv" \
  --out "$out/gpu.json" "$@"
