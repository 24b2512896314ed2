"""Training one of seed 002's models (A-G) on an MRI cohort: every patient's image groups built and checked first,
k-fold cross-validation by patient (out-of-fold patient results, the table `compare-raters` reads), then the
network fitted on every patient and exported as one ONNX model whose probabilities are checked against PyTorch's.

The seed's recipe: full fine-tuning, SGD with momentum 0.9, learning rate 0.1 halved every 20 epochs, batch 16,
categorical cross-entropy on each image group labelled with its patient's class; augmentation by rotation within
+-40 degrees and flips. The patient's result is the sum of its groups' probabilities.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as tvf

from netorigin.calibration.errors import InputDataError
from netorigin.calibration.splits import patient_digests
from netorigin.runtime.atomic import write_text_atomic
from netorigin.runtime.batch.manifest import read_csv_rows
from netorigin.runtime.errors import MriInputError
from netorigin.runtime.families import save_model
from netorigin.runtime.mri.clinical import DEFAULT_ENCODING, encode_record, read_clinical
from netorigin.runtime.mri.groups import image_groups, read_series
from netorigin.runtime.mri.protocol import MODEL_KINDS, SEVEN_WAY, ModelKind
from netorigin.runtime.mri.results import write_results_table
from netorigin.runtime.mri.roi import read_roi

from .mri_model import DEFAULT_ARCHITECTURE, LesionNet, build_lesion_net, lesion_model_bytes, probabilities

ROTATION_DEGREES = 40.0
PARITY_LIMIT = 1e-4  # issue #25: ONNX vs PyTorch per group; patient classes identical


@dataclass(frozen=True)
class MriTrainPlan:
    kind: str
    architecture: str = DEFAULT_ARCHITECTURE
    weights: str | None = None
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 0.1
    momentum: float = 0.9
    decay_every: int = 20
    decay: float = 0.5
    folds: int = 5
    seed: int = 0
    demo: bool = False

    @property
    def model_kind(self) -> ModelKind:
        return MODEL_KINDS[self.kind]


@dataclass
class PatientGroups:
    """A patient's image groups (this model's sequences), its label in this model's task, its clinical input."""

    patient: str
    label: str
    pixels: np.ndarray
    clinical: np.ndarray | None = None


def read_mri_cohort(manifest: str | Path, clinical: str | Path | None, kind: ModelKind,
                    on_patient: Callable[[], None] = lambda: None) -> tuple[list[PatientGroups], list[str]]:
    """Every usable patient of the manifest (patient,label,<a series folder per sequence>,roi; paths relative to the
    manifest) for `kind`, and one line per patient that cannot be used. Patients outside the task (a benign lesion
    for a malignancy model) are left out."""
    manifest = Path(manifest)
    rows = read_csv_rows(manifest, ("patient", "label", *kind.sequences, "roi"))
    records = read_clinical(clinical) if kind.clinical and clinical is not None else None
    if kind.clinical and records is None:
        raise InputDataError(f"Model {kind.name} joins clinical data: give the clinical CSV")
    patients, problems = [], []
    for row in rows:
        try:
            if row["label"] not in SEVEN_WAY:
                raise MriInputError(f"patient {row['patient']}: unknown lesion class {row['label']!r} (known: "
                                    f"{', '.join(SEVEN_WAY)})")
            label = kind.label_of(row["label"])
            if label is None:
                continue
            patients.append(_patient(row, label, manifest.parent, kind, records))
        except MriInputError as exc:
            text = str(exc)
            problems.append(text if text.startswith(f"patient {row['patient']}:") else
                            f"patient {row['patient']}: {text}")
        finally:
            on_patient()
    return patients, problems


def _patient(row: dict[str, str], label: str, base: Path, kind: ModelKind, records: dict | None) -> PatientGroups:
    vector = None
    if records is not None:
        if row["patient"] not in records:
            raise MriInputError(f"patient {row['patient']}: no row in the clinical table")
        vector = encode_record(records[row["patient"]], DEFAULT_ENCODING, row["patient"])
    series = [read_series(base / row[s], s) for s in kind.sequences]
    groups = image_groups(series, read_roi(base / row["roi"], series[0]), base / row["roi"])
    return PatientGroups(row["patient"], label, groups.pixels, vector)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotation within +-40 degrees and horizontal / vertical flips, drawn per group."""
    out = []
    for image in batch:
        angle = float(torch.empty(1).uniform_(-ROTATION_DEGREES, ROTATION_DEGREES, generator=generator))
        image = tvf.rotate(image, angle, interpolation=tvf.InterpolationMode.BILINEAR)
        if torch.rand(1, generator=generator) < 0.5:
            image = torch.flip(image, dims=[2])
        if torch.rand(1, generator=generator) < 0.5:
            image = torch.flip(image, dims=[1])
        out.append(image)
    return torch.stack(out)


def _training_set(patients: list[PatientGroups], classes: tuple[str, ...]):
    pixels = np.concatenate([p.pixels for p in patients])
    labels = np.concatenate([np.full(len(p.pixels), classes.index(p.label)) for p in patients])
    clinical = None if patients[0].clinical is None else np.concatenate(
        [np.repeat(p.clinical[None, :], len(p.pixels), axis=0) for p in patients])
    return pixels, labels, clinical


def fit(patients: list[PatientGroups], plan: MriTrainPlan, on_batch: Callable[[], None] = lambda: None
        ) -> tuple[LesionNet, dict]:
    """The network trained on every group of `patients` (seeded: initialisation, order, augmentation)."""
    kind = plan.model_kind
    net, network = build_lesion_net(kind, plan.architecture, plan.weights, plan.seed,
                                    DEFAULT_ENCODING if kind.clinical else None)
    pixels, labels, clinical = _training_set(patients, kind.classes)
    rng = np.random.default_rng(plan.seed)
    generator = torch.Generator().manual_seed(plan.seed)
    optimiser = torch.optim.SGD(net.parameters(), lr=plan.learning_rate, momentum=plan.momentum)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=plan.decay_every, gamma=plan.decay)
    loss_of = torch.nn.CrossEntropyLoss()
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        for _ in range(plan.epochs):
            net.train()
            order, total = rng.permutation(len(pixels)), 0.0
            for start in range(0, len(order), plan.batch_size):
                pick = np.sort(order[start:start + plan.batch_size])
                images = _augment(torch.from_numpy(pixels[pick]), generator)
                extra = None if clinical is None else torch.from_numpy(clinical[pick])
                loss = loss_of(net.logits(images, extra), torch.from_numpy(labels[pick]).long())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(pick)
                on_batch()
            schedule.step()
            losses.append(round(total / len(pixels), 6))
        _settle_batch_norm(net, pixels, plan.batch_size)
    return net.eval(), network | {"train_loss_per_epoch": losses}


def _settle_batch_norm(net: LesionNet, pixels: np.ndarray, batch_size: int) -> None:
    """Batch-norm statistics recomputed on the training groups with the final weights (torch's update_bn), so
    evaluation normalises as the trained layers expect; running averages of a short training lag behind them and
    can make every group look alike."""
    batches = [torch.from_numpy(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(batches, net.backbone)


def patient_scores(net: LesionNet, patients: list[PatientGroups]) -> np.ndarray:
    """Each patient's summed group probabilities (PyTorch)."""
    return np.stack([probabilities(net, p.pixels, p.clinical).astype(np.float64).sum(axis=0) for p in patients])


def folds_of(patients: list[PatientGroups], folds: int, seed: int) -> list[np.ndarray]:
    """Stratified k-fold by patient (k is lowered to the smallest class's size, at least 2)."""
    from sklearn.model_selection import StratifiedKFold

    labels = [p.label for p in patients]
    smallest = min(labels.count(label) for label in set(labels))
    k = min(folds, smallest)
    if k < 2:
        raise InputDataError(f"cross-validation needs at least two patients of every class (smallest: {smallest})")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(labels)), labels)]


def cross_validate(patients: list[PatientGroups], plan: MriTrainPlan, on_batch: Callable[[], None] = lambda: None
                   ) -> np.ndarray:
    """Out-of-fold patient scores: each patient scored by the network fitted without it."""
    scores = np.zeros((len(patients), len(plan.model_kind.classes)))
    for test in folds_of(patients, plan.folds, plan.seed):
        held_out = set(test.tolist())
        net, _ = fit([p for i, p in enumerate(patients) if i not in held_out], plan, on_batch)
        scores[test] = patient_scores(net, [patients[i] for i in test])
    return scores


def check_trainable(patients: list[PatientGroups], plan: MriTrainPlan) -> None:
    """What would stop training midway, refused before any of it: a class without patients, a patient given twice,
    too few patients per class for the folds."""
    kind = plan.model_kind
    names = [p.patient for p in patients]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputDataError(f"patient(s) {', '.join(twice)} appear twice: one row per patient (a patient on both "
                             "sides of a fold would leak)")
    present = {p.label for p in patients}
    if present != set(kind.classes):
        raise InputDataError(f"Model {kind.name} needs patients of every class {', '.join(kind.classes)} (missing: "
                             f"{', '.join(sorted(set(kind.classes) - present))})")
    if plan.folds > 1:
        folds_of(patients, plan.folds, plan.seed)


def training_batches(patients: list[PatientGroups], plan: MriTrainPlan) -> int:
    """How many training batches `train_mri` runs (each fold's fit, then the final fit): the progress bar's length."""
    def batches(groups: int) -> int:
        return plan.epochs * -(-groups // plan.batch_size)

    sizes = [len(p.pixels) for p in patients]
    total = batches(sum(sizes))
    if plan.folds > 1:
        for test in folds_of(patients, plan.folds, plan.seed):
            total += batches(sum(sizes) - sum(sizes[i] for i in test))
    return total


def manifest_rows(manifest: str | Path) -> int:
    """The number of patients a manifest lists (0 if it cannot be read: reading it later says why)."""
    try:
        with Path(manifest).open(newline="", encoding="utf-8") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0


def write_results(path: Path, patients: list[PatientGroups], classes: tuple[str, ...], scores: np.ndarray) -> None:
    """The `compare-raters` table of summed group probabilities, as means (runtime/mri/results)."""
    write_results_table(path, [(p.patient, p.label, row, len(p.pixels)) for p, row in zip(patients, scores,
                                                                                       strict=True)], classes)


def check_parity(model_bytes: bytes, net: LesionNet, patients: list[PatientGroups]) -> dict:
    """ONNX Runtime against PyTorch on every group of `patients`: per group and per patient."""
    import onnxruntime as ort

    from netorigin.runtime.mri.contract import CLINICAL_INPUT, IMAGE_INPUT, PROBABILITY_OUTPUT

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    worst_group, worst_patient, flips = 0.0, 0.0, 0
    for p in patients:
        feed = {IMAGE_INPUT: p.pixels}
        if p.clinical is not None:
            feed[CLINICAL_INPUT] = np.repeat(p.clinical[None, :], len(p.pixels), axis=0)
        onnx_p = session.run([PROBABILITY_OUTPUT], feed)[0].astype(np.float64)
        torch_p = probabilities(net, p.pixels, p.clinical).astype(np.float64)
        worst_group = max(worst_group, float(np.abs(onnx_p - torch_p).max()))
        worst_patient = max(worst_patient, float(np.abs(onnx_p.sum(0) - torch_p.sum(0)).max()))
        flips += int(onnx_p.sum(0).argmax() != torch_p.sum(0).argmax())
    return {"groups": int(sum(len(p.pixels) for p in patients)), "patients": len(patients),
            "max_abs_group_probability": worst_group, "max_abs_patient_sum": worst_patient,
            "patient_class_flips": flips}


def train_mri(patients: list[PatientGroups], out: Path, plan: MriTrainPlan, name: str,
              on_batch: Callable[[], None] = lambda: None) -> dict:
    """Cross-validate, fit on every patient, export `out/NAME.onnx` (only if ONNX Runtime gives PyTorch's classes
    and probabilities within PARITY_LIMIT), write `NAME-cv.csv` and `NAME.json`."""
    kind = plan.model_kind
    check_trainable(patients, plan)
    summary: dict = {"plan": asdict(plan), "patients": len(patients),
                     "groups": int(sum(len(p.pixels) for p in patients)),
                     "per_class": {c: sum(p.label == c for p in patients) for c in kind.classes}}
    if plan.folds > 1:
        cv_scores = cross_validate(patients, plan, on_batch)
        write_results(out / f"{name}-cv.csv", patients, kind.classes, cv_scores)
        summary["cross_validation"] = {"results": f"{name}-cv.csv", "folds": len(folds_of(patients, plan.folds,
                                                                                          plan.seed))}
    net, network = fit(patients, plan, on_batch)
    record = {"demo": plan.demo, "network": network,
              "trained_on_patients_sha256": patient_digests([p.patient for p in patients]),
              "training": {k: v for k, v in asdict(plan).items() if k not in ("kind", "weights", "demo")}}
    provenance = {"patients": len(patients), "groups": summary["groups"], "per_class": summary["per_class"]}
    model_bytes = lesion_model_bytes(net, kind, DEFAULT_ENCODING if kind.clinical else None, record, provenance)
    parity = check_parity(model_bytes, net, patients)
    if parity["patient_class_flips"] or parity["max_abs_group_probability"] > PARITY_LIMIT:
        raise InputDataError(f"Model {kind.name}: ONNX Runtime differs from PyTorch ({parity['patient_class_flips']} "
                             f"patient class flips, max |dp| {parity['max_abs_group_probability']:.2g} > "
                             f"{PARITY_LIMIT:g}); no model written")
    save_model(out / f"{name}.onnx", model_bytes)
    summary["model"] = f"{name}.onnx"
    summary["model_sha256"] = hashlib.sha256(model_bytes).hexdigest()
    summary["parity_onnx_vs_pytorch"] = parity
    write_text_atomic(out / f"{name}.json", json.dumps(summary, indent=2))
    return summary
