"""Cohort labels: 0 pancreas, 1 small intestine (the positive decision), 2 other origin."""

from __future__ import annotations

from netorigin.runtime.slide.verdict import PANCREAS, SMALL_INTESTINE

from .errors import InputDataError

OTHER = "other"
# index = code
LABEL_NAMES = (PANCREAS, SMALL_INTESTINE, OTHER)
_LABEL_CODES = {name: code for code, name in enumerate(LABEL_NAMES)} | {str(c): c for c in range(3)}


def label_code(value, where=None) -> int:
    """0 / 1 / 2 from a label name or code as written in a manifest or sums table."""
    code = _LABEL_CODES.get(str(value).strip().lower().replace(" ", "_"))
    if code is None:
        raise InputDataError(f"unknown label {value!r} (use pancreas, small_intestine or other)", where)
    return code
