"""Precision variants trained by `netorigin train` on the demo cohort, each with bands from its own decisions.

    python benchmarks/variants.py [--workdir DIR] [--out benchmarks/results]

Trains fp32 + fp16 + INT8 on the demo's training cohort (60 / 40 split), then predicts the demo's held-out test
cases with every model through the runtime. Reports, per variant against fp32: verdict flips and max |dS| /
fp32 band width on the calibration patients and on the test cases; and fp32's |S - scikit-learn float64 S|.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, table, write_results  # noqa: E402

from netorigin.export.demo import FULL  # noqa: E402
from netorigin.export.embedder import build_embedder  # noqa: E402
from netorigin.export.synthetic import make_cohort  # noqa: E402
from netorigin.export.train import TrainPlan, train  # noqa: E402
from netorigin.runtime.batch import read_manifest  # noqa: E402
from netorigin.runtime.predictor import Predictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.mkdtemp(prefix="netorigin-variants-")))
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    manifests = {split: make_cohort(args.workdir / "cohort" / split, getattr(FULL, split), seed=offset, mpps=(0.5,),
                                    size_um=FULL.size_um) for offset, split in enumerate(("train", "test"))}
    embedder, info = build_embedder("random", seed=0)
    t = time.perf_counter()
    trained = train(manifests["train"], args.workdir / "model", embedder, info,
                    TrainPlan(precisions=("fp32", "fp16", "int8"), name="variants", demo=True))
    train_s = time.perf_counter() - t
    test = {}
    for precision, path in trained.models.items():
        predictor = Predictor(path, device="cpu", seed=0)
        test[precision] = [(r.verdict.verdict, r.verdict.patient_sum) for r in
                           (predictor.predict_case(c.slides, case_id=c.case_id)
                            for c in read_manifest(manifests["test"]))]
    fp32_band = trained.bands["fp32"].at(trained.bands["fp32"].default_confidence)
    width = fp32_band.upper - fp32_band.lower
    rows, results = [], {"environment": environment(), "train_s": round(train_s, 1), "variants": {}}
    for precision, cal in trained.summary["models"].items():
        flips = sum(a[0] != b[0] for a, b in zip(test[precision], test["fp32"]))
        delta = max(abs(a[1] - b[1]) for a, b in zip(test[precision], test["fp32"]))
        results["variants"][precision] = {
            "calibration_flips": cal["verdict_flips_vs_fp32"], "calibration_max_dS_over_width":
                cal["max_abs_delta_s_over_band_width"], "test_flips": flips, "test_max_dS_over_width": delta / width,
            "default_confidence": cal["default_confidence"]}
        rows.append([precision, cal["verdict_flips_vs_fp32"], cal["max_abs_delta_s_over_band_width"], flips,
                     delta / width])
    results["fp32_vs_sklearn_float64_max_abs_dS"] = trained.summary["fp32_vs_head_reference_max_abs_delta_s"]
    results["calibration_patients"] = len(trained.split.calibration)
    results["test_cases"] = len(test["fp32"])
    markdown = "\n".join([
        f"# Precision variants via `netorigin train` ({results['environment']['date']})", "",
        f"Demo cohort: {len(trained.split.fit)} fit, {len(trained.split.calibration)} calibration patients, "
        f"{len(test['fp32'])} held-out test cases, 100 patches each; train (all three models) {train_s:.0f} s.", "",
        table(["model", "calibration flips vs fp32", "calibration max |dS| / width", "test flips vs fp32",
               "test max |dS| / width"], rows), "",
        f"fp32 model on ONNX Runtime vs scikit-learn float64 on the same embeddings: max |dS| = "
        f"{results['fp32_vs_sklearn_float64_max_abs_dS']:.3g}", ""])
    write_results(args.out, "variants", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
