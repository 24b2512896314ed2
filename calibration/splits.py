"""The paper's fit / calibration split of patients: seeded and stratified, or read from a file.

The head is fitted on the fit part only; the bands are fixed on the calibration part (held-out labelled
patients) plus every other-origin patient, so the bands are never in-sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

from netorigin.runtime.atomic import write_text_atomic

from .errors import InputDataError


@dataclass(frozen=True)
class PatientSplit:
    """Patient ids that fit the head, and patient ids (labelled held-out + all others) that fix the bands."""

    fit: tuple[str, ...]
    calibration: tuple[str, ...]
    source: str

    def to_json(self) -> dict:
        return {"fit": list(self.fit), "calibration": list(self.calibration), "source": self.source}

    def write(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_json(), indent=2))


def patient_digests(patients) -> list[str]:
    """Short SHA-256 digests of patient ids: a model can name its fit patients without carrying their ids."""
    return sorted(hashlib.sha256(str(p).encode()).hexdigest()[:16] for p in patients)


def in_sample(calibration: list[str], fit: list[str] | None = None, fit_digests: list[str] | None = None
              ) -> list[str]:
    """Calibration (or test) patients that also trained something (by id, or by digest when only a model or a
    checkpoint is at hand)."""
    found = set(calibration) & set(fit or [])
    digests = set(fit_digests or [])
    found |= {p for p in calibration if patient_digests([p])[0] in digests}
    return sorted(found)


def refuse_in_sample(overlap: list[str], allow: bool, where=None, role: str = "calibration patient(s) also "
                     "fitted the head") -> None:
    """In-sample bands or evaluations are optimistic: refuse them, naming the patients, unless research use is
    explicit."""
    if overlap and not allow:
        shown = ", ".join(overlap[:8]) + (f" (+{len(overlap) - 8} more)" if len(overlap) > 8 else "")
        raise InputDataError(f"{len(overlap)} {role}: {shown}; use held-out patients (netorigin train does the "
                             "split), or pass --allow-in-sample for research (recorded in the model and every "
                             "report)", where)


EMBEDDER_ROLE = "calibration or test patient(s) trained the embedder (finetune)"


def stratified_split(patients: list[tuple[str, int]], fit_fraction: float, seed: int) -> PatientSplit:
    """Labelled patients (label 0/1) split by class; other-origin patients (label 2) always calibrate."""
    labelled = [(p, lab) for p, lab in patients if lab < 2]
    others = [p for p, lab in patients if lab == 2]
    if not 0 < fit_fraction < 1:
        raise InputDataError(f"fit fraction {fit_fraction} must lie strictly between 0 and 1")
    counts = {lab: sum(1 for _, x in labelled if x == lab) for lab in (0, 1)}
    if min(counts.values()) < 2:
        raise InputDataError(f"a stratified split needs at least 2 pancreas and 2 small-intestine patients "
                             f"(have {counts[0]} and {counts[1]})")
    try:
        fit, held = train_test_split([p for p, _ in labelled], train_size=fit_fraction,
                                     stratify=[lab for _, lab in labelled], random_state=seed)
    except ValueError as exc:
        raise InputDataError(f"cannot split {len(labelled)} labelled patients at {fit_fraction:g} ({exc})") from None
    return PatientSplit(tuple(fit), tuple(held) + tuple(others), f"stratified {fit_fraction:g} / seed {seed}")


def read_split(path: str | Path, patients: list[tuple[str, int]]) -> PatientSplit:
    """A split file {"fit": [...], "calibration": [...]}; every patient once, other origins never in fit."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        fit, calibration = [str(p) for p in doc["fit"]], [str(p) for p in doc["calibration"]]
    except FileNotFoundError:
        raise InputDataError("split file not found", path) from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputDataError(f"not a split file: needs {{\"fit\": [...], \"calibration\": [...]}} ({exc})",
                             path) from None
    labels = dict(patients)
    unknown = sorted(set(fit + calibration) - set(labels))
    both = sorted(set(fit) & set(calibration))
    missing = sorted(set(labels) - set(fit) - set(calibration))
    others_fit = sorted(p for p in fit if labels.get(p) == 2)
    for problem, names in (("unknown patients", unknown), ("patients in both parts", both),
                           ("patients in neither part", missing), ("other-origin patients in fit", others_fit)):
        if names:
            raise InputDataError(f"{problem}: {', '.join(names[:5])}" + (" …" if len(names) > 5 else ""), path)
    return PatientSplit(tuple(fit), tuple(calibration), f"file {path.name}")
