"""Uncertainty bands (c = k/o), the patient verdict, and the paper's evaluation protocols.

`bands` and `verdict` are pure numpy and are used by the lean runtime; `protocols`, `metrics` and
`plots` need the `export` extra (scikit-learn, scipy, matplotlib).
"""

from .bands import BandTable, calibrate_bands
from .verdict import PatientVerdict, patient_verdict

__all__ = ["BandTable", "calibrate_bands", "PatientVerdict", "patient_verdict"]
