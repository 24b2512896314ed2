"""Peak memory of INT8 calibration: `netorigin`'s strided MinMax on ResNet50 patches.

    python benchmarks/int8_memory.py [--patches 256]

Quantises the seeded random-weight ResNet50 embedder on random uint8 patches, the way `train` and `export` do,
and records the process's peak RSS. For comparison: ONNX Runtime's default calibration keeps every intermediate
tensor of every patch; in this project's session of 2026-11-27 it was OOM-killed at 19.8-23.6 GB RSS on a 24 GB
machine with 256 patches (kernel log), which is why calibration now runs in strides.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, write_results  # noqa: E402

from netorigin.export.embedder import build_embedder  # noqa: E402
from netorigin.export.onnx_graph import export_embedder  # noqa: E402
from netorigin.export.precision import Int8Recipe, to_int8  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=256)
    args = parser.parse_args()
    embedder, _ = build_embedder("random", seed=0)
    model = export_embedder(embedder)
    patches = np.random.default_rng(0).integers(0, 256, (args.patches, 224, 224, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    start = time.perf_counter()
    to_int8(model, patches, Int8Recipe())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    results = {"environment": environment(), "patches": args.patches, "seconds": round(seconds, 1),
               "peak_rss_gb": round(peak, 2), "peak_rss_gb_before_quantising": round(before, 2)}
    markdown = (f"# INT8 calibration memory\n\n{args.patches} patches: peak RSS {peak:.2f} GB "
                f"({before:.2f} GB before quantising), {seconds:.1f} s.\n")
    write_results(ROOT / "results", "int8-memory", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
