"""Per-patient sums S from patch decision values, grouped as the runtime groups a case."""

from __future__ import annotations

import numpy as np

from netorigin.runtime.slide.verdict import case_score

from .bands_io import PatientSum


def sums_by_patient(patients: np.ndarray, labels: np.ndarray, decisions: np.ndarray) -> list[PatientSum]:
    """Group patch decisions by patient (first-appearance order), summing in patch order."""
    out = []
    for patient in dict.fromkeys(patients.tolist()):
        mask = patients == patient
        out.append(PatientSum(str(patient), int(labels[mask][0]), *case_score(decisions[mask])))
    return out
