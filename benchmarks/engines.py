"""Engines side by side on one model, in one run: ONNX Runtime fp32 against OpenVINO f32 and bf16.

    python benchmarks/engines.py --model MODEL.onnx --manifest CASES.csv [--repeats 5]

Throughput: patches/s at the product's batch
(CPU_BATCH; 32 before 2026-12-07) on real patches of the cases, median and min-max of
`--repeats`, engines interleaved so that they share the machine's state. Fidelity: every case predicted through
the runtime with each engine (same seed); verdict flips against ONNX Runtime fp32 and max |dS| / band width.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import case_fidelity, environment, table, write_results  # noqa: E402

from netorigin.runtime.batch.slides import read_manifest  # noqa: E402
from netorigin.runtime.engines.session import CPU_BATCH  # noqa: E402
from netorigin.runtime.slide.predictor import Predictor  # noqa: E402

ENGINES = {"onnxruntime fp32": ("onnxruntime", "auto"), "openvino f32": ("openvino", "f32"),
           "openvino bf16": ("openvino", "bf16")}
BATCH = CPU_BATCH  # the product's batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    cases = read_manifest(args.manifest)
    predictors = {name: Predictor(args.model, device="cpu", engine=engine, ov_precision=precision)
                  for name, (engine, precision) in ENGINES.items()}
    results = {name: [p.predict_case(c.slides, case_id=c.case_id) for c in cases] for name, p in predictors.items()}
    reference = results["onnxruntime fp32"]
    band = predictors["onnxruntime fp32"].band
    width = band.upper - band.lower
    # real patches for throughput: the first case's, read once (reading is not what is timed here)
    first = cases[0]
    pixels = _pixels(predictors["onnxruntime fp32"], first)
    rates: dict[str, list[float]] = {name: [] for name in ENGINES}
    for p in predictors.values():
        p.session.run(pixels)  # warm-up
    for _ in range(args.repeats):
        for name, p in predictors.items():
            t = time.perf_counter()
            p.session.run(pixels)
            rates[name].append(BATCH / (time.perf_counter() - t))
    out = {"environment": environment(), "cases": len(cases), "batch": BATCH, "engines": {}}
    rows = []
    base = statistics.median(rates["onnxruntime fp32"])
    for name in ENGINES:
        flips, delta = case_fidelity(results[name], reference)
        median = statistics.median(rates[name])
        out["engines"][name] = {"provider": predictors[name].provider, "patches_per_s": {
            "median": round(median, 1), "min": round(min(rates[name]), 1), "max": round(max(rates[name]), 1)},
            "ratio_vs_onnxruntime_fp32": round(median / base, 2), "verdict_flips": flips,
            "max_abs_dS_over_band_width": delta / width}
        rows.append([name, median, f"{min(rates[name]):.1f}-{max(rates[name]):.1f}", median / base, flips,
                     delta / width])
    text = (f"# Engines on one model ({out['environment']['cores']} cores, {out['environment']['cpu']})\n\n"
            f"Throughput at batch {BATCH}, {args.repeats} interleaved repetitions; fidelity on {len(cases)} cases "
            "of 100 patches against ONNX Runtime fp32.\n\n"
            + table(["engine", "patches/s median", "min-max", "x ORT fp32", "verdict flips", "max |dS| / width"],
                    rows) + "\n")
    write_results(args.out, "engines", out, text)
    print(text)


def _pixels(predictor: Predictor, case) -> np.ndarray:
    """The case's sampled patches, as the runtime samples them."""
    from concurrent.futures import ThreadPoolExecutor

    from netorigin.runtime.slide.regions import load_annotations
    from netorigin.runtime.slide.sampling import sample_slide
    from netorigin.runtime.slide.slide import Slide

    item = case.slides[0]
    with Slide(item.path, item.mpp) as slide, ThreadPoolExecutor(2) as readers:
        regions = load_annotations(item.annotations, slide)
        return np.stack([p.pixels for p in sample_slide(slide, regions, BATCH, predictor.geometry, 0, 0, readers)])


if __name__ == "__main__":
    main()
