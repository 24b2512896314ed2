"""Per-patient sums from embeddings and a fitted head (training side: needs scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bands_io import PatientSum
from .verdict import patient_sum


def sums_by_patient(patients: np.ndarray, labels: np.ndarray, decisions: np.ndarray) -> list[PatientSum]:
    """Group patch decisions by patient (first-appearance order), summing in patch order."""
    out = []
    for patient in dict.fromkeys(patients.tolist()):
        mask = patients == patient
        d = decisions[mask]
        out.append(PatientSum(str(patient), int(labels[mask][0]), patient_sum(d), int(np.sum(d > 0)), int(d.size)))
    return out


def patient_sums_from_embeddings(embeddings: str | Path, head: str | Path) -> list[PatientSum]:
    from netorigin.export.build import load_head
    from netorigin.export.embeddings import Embeddings

    emb = Embeddings.load(embeddings)
    pipeline = load_head(head)["pipeline"]
    decisions = pipeline.decision_function(emb.embeddings.astype(np.float64))
    return sums_by_patient(emb.patients, emb.labels, decisions)
