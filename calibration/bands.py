"""Threshold calibration: the abstention band for every confidence c = k/o (method.md, exactly).

For each k, among all runs of k consecutive sorted other-origin sums, choose the band
(O[i] - 1e-7, O[i+k-1] + 1e-7) that holds the fewest labelled ("pi") patients strictly inside, then
the one closest to the decision boundary (smallest |L + R|), then the smallest i. c = 0 is (0, 0).
"""

from __future__ import annotations

import numpy as np

from netorigin.runtime.model.bands import Band, BandTable

from .errors import InputDataError

MARGIN = 1e-7


def _finite_1d(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InputDataError(f"{what} sums must be a flat list of numbers")
    if not np.all(np.isfinite(array)):
        raise InputDataError(f"{what} sums contain NaN or infinite values")
    return array


def calibrate_bands(pi_sums, other_sums) -> BandTable:
    """Band table from per-patient sums of labelled (pancreas/small intestine) and other-origin patients."""
    pi = _finite_1d(pi_sums, "labelled-patient")
    others = np.sort(_finite_1d(other_sums, "other-origin"), kind="stable")
    if others.size < 1:
        raise InputDataError("calibration needs at least one other-origin patient (none given)")
    if pi.size < 1:
        raise InputDataError("calibration needs at least one labelled pancreas/small-intestine patient")
    o = others.size
    bands = [Band(c=0.0, pi_inside=0, lower=0.0, upper=0.0)]
    for k in range(1, o + 1):
        best = None
        for i in range(o - k + 1):
            lower = float(others[i]) - MARGIN
            upper = float(others[i + k - 1]) + MARGIN
            inside = int(np.count_nonzero((pi > lower) & (pi < upper)))
            key = (inside, abs(lower + upper), i)
            if best is None or key < best[0]:
                best = (key, lower, upper)
        (inside, _, _), lower, upper = best
        bands.append(Band(c=k / o, pi_inside=inside, lower=lower, upper=upper))
    return BandTable(bands=tuple(bands), n_pi=int(pi.size), n_other=o)
