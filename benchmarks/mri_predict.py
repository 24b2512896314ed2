"""Seed 002 at predict time on the CPU, with the seed's network (Inception-ResNet-v2, random weights: speed and
parity do not depend on training): patients/s for Model A (six sequences) and Model G (three sequences + clinical
data) from DICOM series to lesion class, the split between preparing the image groups and inference, peak RSS of
`netorigin predict` in a child process, and ONNX Runtime against PyTorch per group and per patient.

    python benchmarks/mri_predict.py [--patients 10] [--reps 5] [--architecture inception_resnet_v2]

Each repetition predicts every patient once (series read from disk every time, a new seed for nothing: the path
has no randomness), interleaving the models; the median and min-max of the repetitions are reported. Goals from
issue #25: identical patient classes and group probabilities within 1e-4 between ONNX and PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from common import child_peak_rss_mb, environment, spread, table, write_results  # noqa: E402

from netorigin.export.mri_model import build_lesion_net, lesion_model_bytes, probabilities  # noqa: E402
from netorigin.export.synthetic_mri import make_mri_cohort  # noqa: E402
from netorigin.runtime.mri.clinical import DEFAULT_ENCODING, encode_record, read_clinical  # noqa: E402
from netorigin.runtime.mri.predictor import MriCase, MriPredictor  # noqa: E402
from netorigin.runtime.mri.protocol import MALIGNANT, MODEL_KINDS  # noqa: E402

KINDS = ("A", "G")


def export(kind: str, architecture: str, out: Path):
    task = MODEL_KINDS[kind]
    net, network = build_lesion_net(task, architecture, None, seed=0, clinical=DEFAULT_ENCODING)
    path = out / f"bench-{kind}.onnx"
    start = time.perf_counter()
    path.write_bytes(lesion_model_bytes(net, task, DEFAULT_ENCODING if task.clinical else None,
                                        {"demo": True, "network": network, "trained_on_patients_sha256": []}, {}))
    return net, path, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--architecture", default="inception_resnet_v2")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mri-bench-"))
    per_class = max(1, args.patients // len(MALIGNANT))
    make_mri_cohort(work / "cohort", dict.fromkeys(MALIGNANT, per_class), seed=11)
    records = read_clinical(work / "cohort" / "clinical.csv")
    folders = sorted(p for p in (work / "cohort").iterdir() if p.is_dir())
    results: dict = {"environment": environment(), "architecture": args.architecture, "patients": len(folders),
                     "reps": args.reps, "models": {}}
    nets, predictors = {}, {}
    for kind in KINDS:
        net, path, seconds = export(kind, args.architecture, work)
        nets[kind], predictors[kind] = net, MriPredictor(path, device="cpu")
        results["models"][kind] = {"export_s": round(seconds, 1), "model_mb": round(path.stat().st_size / 1e6, 1)}
    cases = [MriCase.from_folder(f, clinical=records[f.name]) for f in folders]
    timings = {kind: {"total": [], "prepare": [], "inference": []} for kind in KINDS}
    for _ in range(args.reps):
        for kind in KINDS:  # interleaved: both models see the same machine state
            start, prepare, inference = time.perf_counter(), 0.0, 0.0
            for case in cases:
                result = predictors[kind].predict(case)
                prepare += result.timings["prepare"]
                inference += result.timings["inference"]
            timings[kind]["total"].append(len(cases) / (time.perf_counter() - start))
            timings[kind]["prepare"].append(prepare / len(cases))
            timings[kind]["inference"].append(inference / len(cases))
    for kind in KINDS:
        predictor, worst_group, worst_patient, flips, groups = predictors[kind], 0.0, 0.0, 0, 0
        for case in cases:
            pixels = predictor.groups(case).pixels
            clinical = encode_record(case.clinical, DEFAULT_ENCODING, case.patient) if MODEL_KINDS[kind].clinical \
                else None
            onnx_p = predictor.run(pixels, clinical).astype("float64")
            torch_p = probabilities(nets[kind], pixels, clinical).astype("float64")
            worst_group = max(worst_group, float(abs(onnx_p - torch_p).max()))
            worst_patient = max(worst_patient, float(abs(onnx_p.sum(0) - torch_p.sum(0)).max()))
            flips += int(onnx_p.sum(0).argmax() != torch_p.sum(0).argmax())
            groups += len(pixels)
        rss = [child_peak_rss_mb([str(Path(sys.executable).with_name("netorigin")), "predict", str(folders[0]), "-m",
                             str(work / f"bench-{kind}.onnx"), "--device", "cpu", "--clinical",
                             str(work / "cohort" / "clinical.csv")] if MODEL_KINDS[kind].clinical else
                            [str(Path(sys.executable).with_name("netorigin")), "predict", str(folders[0]), "-m",
                             str(work / f"bench-{kind}.onnx"), "--device", "cpu"]) for _ in range(args.reps)]
        results["models"][kind] |= {
            "patients_per_s": spread(timings[kind]["total"], 3),
            "prepare_s_per_patient": spread(timings[kind]["prepare"], 3),
            "inference_s_per_patient": spread(timings[kind]["inference"], 3),
            "groups": groups, "predict_peak_rss_mb": spread(rss, 0),
            "parity": {"max_abs_group_probability": worst_group, "max_abs_patient_sum": worst_patient,
                       "patient_class_flips": flips}}
    rows = [[kind, r["patients_per_s"]["median"], f"{r['patients_per_s']['min']}-{r['patients_per_s']['max']}",
             r["prepare_s_per_patient"]["median"], r["inference_s_per_patient"]["median"],
             r["predict_peak_rss_mb"]["median"], f"{r['parity']['max_abs_group_probability']:.1e}",
             r["parity"]["patient_class_flips"]] for kind, r in results["models"].items()]
    markdown = (f"# MRI predict on the CPU ({args.architecture}, {len(folders)} patients x {args.reps} reps)\n\n"
                + table(["model", "patients/s", "min-max", "prepare s/patient", "inference s/patient",
                         "predict peak RSS MB", "max |dp| ONNX vs PyTorch", "class flips"], rows) + "\n")
    write_results(ROOT / "results", "mri-predict", results, markdown)
    print(markdown)
    print(json.dumps(results["environment"]))


if __name__ == "__main__":
    main()
