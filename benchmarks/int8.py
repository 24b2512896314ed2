"""INT8 mixed precision on the demo cohort: which ResNet50 stages hurt most when quantised, what keeping them in
float32 costs in speed, and which recipe flips no verdict.

    python benchmarks/int8.py [--workdir DIR] [--reps 5]

Trains the demo's fp32 model (60 / 40 split of the demo training cohort) once, then builds one INT8 model per
recipe (the ResNet50 stages kept in float32), each calibrated (MinMax) on the same 256 fit-patient patches. Every
model scores the same patches: the calibration patients' cases (its bands come from these, its own decisions)
and the demo's held-out test cases. Per recipe, against fp32: verdict flips (each model with its own bands) and
max |dS| / fp32 band width, on calibration patients and test cases; and patches/s at the product's batch
(CPU_BATCH; 32 before 2026-12-07),
median and min-max of `--reps` interleaved repetitions, with the ratio to fp32 from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, spread, table, write_results  # noqa: E402

from netorigin.calibration.bands import calibrate_bands  # noqa: E402
from netorigin.export.demo import FULL  # noqa: E402
from netorigin.export.embedder import build_embedder  # noqa: E402
from netorigin.export.embeddings import calibration_patches, iter_cohort  # noqa: E402
from netorigin.export.precision import Int8Recipe, convert  # noqa: E402
from netorigin.export.synthetic import make_cohort  # noqa: E402
from netorigin.export.train import TrainPlan, train  # noqa: E402
from netorigin.runtime.engines.session import CPU_BATCH  # noqa: E402
from netorigin.runtime.slide.verdict import patient_sum, verdict_from_sum  # noqa: E402

BATCH = CPU_BATCH  # the product's batch
STAGES = ("trunk.bn1", "trunk.layer1", "trunk.layer2", "trunk.layer3", "trunk.layer4")
RECIPES = [Int8Recipe(float_stem=False)] + [Int8Recipe((stage,), float_stem=False) for stage in STAGES] + \
          [Int8Recipe(("trunk.bn1", "trunk.layer4"), float_stem=False),
           Int8Recipe(("trunk.layer3", "trunk.layer4"), float_stem=False)]


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def case_sums(sess: ort.InferenceSession, cases: list) -> list[tuple[float, int, int]]:
    out = []
    for case in cases:
        d = np.concatenate([sess.run(["decision"], {"patches": case.pixels[i:i + BATCH]})[0]
                            for i in range(0, len(case.pixels), BATCH)])
        out.append((patient_sum(d), int(np.sum(d > 0)), int(d.size)))
    return out


def verdicts(sums: list[tuple[float, int, int]], band) -> list[str]:
    return [verdict_from_sum(s, v, n, (band.lower, band.upper)) for s, v, n in sums]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("netorigin-int8"))
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    manifests = {}
    for offset, part in enumerate(("train", "test")):  # written once per workdir
        manifest = args.workdir / "cohort" / part / "manifest.csv"
        manifests[part] = manifest if manifest.exists() else make_cohort(
            manifest.parent, getattr(FULL, part), seed=offset, mpps=(0.5,), size_um=FULL.size_um)
    model_path = args.workdir / "model" / "int8-bench.onnx"
    split_path = args.workdir / "model" / "int8-bench-split.json"
    if not model_path.exists():  # trained once per workdir: the recipes are what is compared
        embedder, info = build_embedder("random", seed=0)
        train(manifests["train"], args.workdir / "model", embedder, info, TrainPlan(name="int8-bench", demo=True),
              echo=lambda _: None)
    fp32 = onnx.load(str(model_path))
    split = json.loads(split_path.read_text())
    patches, _ = calibration_patches(manifests["train"], 256, 0, patients=set(split["fit"]))
    cal_cases = list(iter_cohort(manifests["train"], 100, 0, patients=set(split["calibration"])))
    test_cases = list(iter_cohort(manifests["test"], 100, 0))
    labels = [c.label for c in cal_cases]
    speed_patches = np.concatenate([c.pixels for c in test_cases])[:BATCH * 3]

    def bands_of(sums):
        table_ = calibrate_bands([s for (s, _, _), lab in zip(sums, labels) if lab < 2],
                                 [s for (s, _, _), lab in zip(sums, labels) if lab == 2])
        return table_.at(table_.default_confidence)

    reference = session(fp32)
    ref_cal, ref_test = case_sums(reference, cal_cases), case_sums(reference, test_cases)
    ref_band = bands_of(ref_cal)
    width = ref_band.upper - ref_band.lower
    models = {"fp32": (reference, None)}
    rows_raw = {}
    for recipe in RECIPES:
        name = (f"float {', '.join(s.removeprefix('trunk.') for s in recipe.keep_float)}" if recipe.keep_float
                else "all convolutions INT8")
        name = name.replace("float bn1", "float stem (conv1)")
        t = time.perf_counter()
        sess = session(convert(fp32, "int8", patches, recipe))
        build_s = time.perf_counter() - t
        cal, test = case_sums(sess, cal_cases), case_sums(sess, test_cases)
        band = bands_of(cal)
        rows_raw[name] = {
            "recipe": recipe.as_dict(), "build_s": round(build_s, 1),
            "calibration_flips": sum(a != b for a, b in zip(verdicts(cal, band), verdicts(ref_cal, ref_band))),
            "calibration_max_dS_over_width": max(abs(a[0] - b[0]) for a, b in zip(cal, ref_cal)) / width,
            "test_flips": sum(a != b for a, b in zip(verdicts(test, band), verdicts(ref_test, ref_band))),
            "test_max_dS_over_width": max(abs(a[0] - b[0]) for a, b in zip(test, ref_test)) / width}
        models[name] = (sess, recipe)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.reps):  # interleaved: every model once per repetition
        for name, (sess, _) in models.items():
            t = time.perf_counter()
            for i in range(0, len(speed_patches), BATCH):
                sess.run(["decision"], {"patches": speed_patches[i:i + BATCH]})
            times[name].append(len(speed_patches) / (time.perf_counter() - t))
    fp32_median = statistics.median(times["fp32"])
    rows = []
    for name, stats in rows_raw.items():
        pps = times[name]
        stats["patches_per_s"] = spread(pps)
        stats["speedup_vs_fp32"] = stats["patches_per_s"]["median"] / fp32_median
        rows.append([name, f"{stats['patches_per_s']['median']:.1f} ({min(pps):.1f}–{max(pps):.1f})",
                     f"{stats['speedup_vs_fp32']:.2f}×", stats["calibration_flips"],
                     f"{stats['calibration_max_dS_over_width']:.4f}", stats["test_flips"],
                     f"{stats['test_max_dS_over_width']:.4f}"])
    results = {"environment": environment(), "batch": BATCH, "reps": args.reps,
               "fp32_patches_per_s": spread(times["fp32"]),
               "calibration_patients": len(cal_cases), "test_cases": len(test_cases), "recipes": rows_raw}
    markdown = "\n".join([
        f"# INT8 recipes on the demo cohort ({results['environment']['cpu']}, "
        f"{results['environment']['cores']} cores)", "",
        f"fp32: {fp32_median:.1f} patches/s at batch {BATCH} (min–max {min(times['fp32']):.1f}–"
        f"{max(times['fp32']):.1f}); {len(cal_cases)} calibration patients, {len(test_cases)} test cases, 100 "
        "patches each; each INT8 model's bands from its own decisions.", "",
        table(["recipe", "patches/s (min–max)", "vs fp32", "cal. flips", "cal. max |dS|/width", "test flips",
               "test max |dS|/width"], rows), "",
        "Goal: INT8 ≥ 2.5× fp32 with 0 verdict flips and max |dS| / band width ≤ 0.01."])
    write_results(ROOT / "results", "int8", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
