"""The per-patient results table that `compare-raters` reads: `patient,label,<score per class>`, the score being
the mean of the patient's group probabilities — the sum the patient rule compares divided by the number of groups,
so the call is the same and a lesion seen on many sections does not outscore a small one in an ROC."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic


def write_results_table(path: Path, rows: Sequence[tuple[str, str, np.ndarray, int]], classes: Sequence[str]
                        ) -> None:
    """Rows of (patient, label, summed probabilities, groups), written atomically as CSV (quoted where needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient", "label", *classes])
    for patient, label, sums, groups in rows:
        writer.writerow([patient, label, *(f"{v / groups:.8g}" for v in sums)])
    write_text_atomic(path, buffer.getvalue())
