"""`netorigin demo --mri`: seed 002's chain on synthetic MRI in a few minutes on two cores — a training and a
held-out cohort written as DICOM, Model A (seven-way, six sequences) and Model G (malignancy three-way, three
unenhanced sequences + clinical data) trained and exported, the held-out patients predicted by the runtime from
their DICOM series, and the seed's Table 1 and Table 3 shapes printed. Demo models, labelled so everywhere."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netorigin.calibration.rater_tables import RaterCalls, evaluation_tables, tables_markdown
from netorigin.runtime.atomic import write_text_atomic
from netorigin.runtime.batch.manifest import read_csv_rows
from netorigin.runtime.mri.clinical import read_clinical
from netorigin.runtime.mri.predictor import MriCase, MriPredictor
from netorigin.runtime.mri.protocol import MODEL_KINDS, SEVEN_WAY
from netorigin.runtime.progress import progress

from .mri_train import MriTrainPlan, read_mri_cohort, train_mri, training_batches
from .synthetic_mri import make_mri_cohort


@dataclass(frozen=True)
class MriDemoPlan:
    train_per_class: int = 4
    test_per_class: int = 2
    architecture: str = "mobilenetv3_small_050"  # the seed's Inception-ResNet-v2 is ~25x the compute
    epochs: int = 12
    learning_rate: float = 0.01
    kinds: tuple[str, ...] = ("A", "G")


MRI_FULL = MriDemoPlan()
MRI_SMALL = MriDemoPlan(train_per_class=1, test_per_class=1, epochs=1, architecture="test_efficientnet")  # tests


def _results(predictor: MriPredictor, cohort: Path, kind: str) -> RaterCalls:
    """The runtime's result for every held-out patient of the model's task, read from its DICOM series."""
    task = MODEL_KINDS[kind]
    records = read_clinical(cohort / "clinical.csv")
    lesions = {row["patient"]: row["label"] for row in read_csv_rows(cohort / "cohort.csv", ("patient", "label"))}
    patients, labels, scores = [], [], []
    for patient in sorted(lesions):
        label = task.label_of(lesions[patient])
        if label is None:
            continue
        result = predictor.predict(MriCase.from_folder(cohort / patient, clinical=records[patient]))
        patients.append(patient)
        labels.append(label)
        scores.append(result.sums)
    scores_array = np.array(scores)
    calls = tuple(task.classes[i] for i in scores_array.argmax(axis=1))
    return RaterCalls(f"Model {kind}", task.classes, tuple(patients), tuple(labels), calls, scores_array)


def run_mri_demo(out: Path, plan: MriDemoPlan = MriDemoPlan(), seed: int = 0, echo=print, quiet: bool = True
                 ) -> dict:
    start = time.perf_counter()
    counts_train = dict.fromkeys(SEVEN_WAY, plan.train_per_class)
    train_manifest = make_mri_cohort(out / "train", counts_train, seed=seed)
    make_mri_cohort(out / "test", dict.fromkeys(SEVEN_WAY, plan.test_per_class), seed=seed + 1)
    echo(f"synthetic MRI: {7 * plan.train_per_class} training and {7 * plan.test_per_class} held-out patients "
         f"({time.perf_counter() - start:.0f} s)")
    summary: dict = {"plan": plan.__dict__, "models": {}}
    results = []
    for kind in plan.kinds:
        patients, problems = read_mri_cohort(train_manifest, out / "train" / "clinical.csv", MODEL_KINDS[kind])
        if problems:  # the synthetic cohort is always usable; anything else is a bug worth its own message
            raise RuntimeError("; ".join(problems))
        train_plan = MriTrainPlan(kind=kind, architecture=plan.architecture, epochs=plan.epochs,
                                  learning_rate=plan.learning_rate, folds=0, seed=seed, demo=True)
        began = time.perf_counter()
        with progress(training_batches(patients, train_plan), f"training {kind}", "batches", quiet) as step:
            trained = train_mri(patients, out / "models", train_plan, f"model-{kind}", on_batch=step)
        predictor = MriPredictor(out / "models" / trained["model"], device="cpu")
        predicted = time.perf_counter()
        calls = _results(predictor, out / "test", kind)
        rate = len(calls.patients) / (time.perf_counter() - predicted)
        results.append(calls)
        summary["models"][kind] = {"training": trained, "held_out_patients": len(calls.patients),
                                   "patients_per_s": rate, "train_s": predicted - began}
        echo(f"Model {kind}: trained on {trained['patients']} patients ({predicted - began:.0f} s), ONNX vs "
             f"PyTorch max |dp| {trained['parity_onnx_vs_pytorch']['max_abs_group_probability']:.1e}; "
             f"{len(calls.patients)} held-out patients predicted from DICOM at {rate:.1f} patients/s")
    tables = evaluation_tables(results)
    summary["tables"] = tables
    summary["timings_s"] = {"total": time.perf_counter() - start}
    write_text_atomic(out / "mri-demo-summary.json", json.dumps(summary, indent=2))
    write_text_atomic(out / "mri-demo-tables.md", tables_markdown(tables))
    return summary
