"""The patient verdict rule: S, the majority vote and the abstention band (the scanner applies it; calibration
and evaluation reuse it, so there is one implementation)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PANCREAS, SMALL_INTESTINE, UNCERTAIN = "pancreas", "small_intestine", "uncertain"


@dataclass(frozen=True)
class PatientVerdict:
    """S, the majority vote, and the verdict after the abstention band."""

    verdict: str
    majority: str
    patient_sum: float
    votes_small_intestine: int
    n_patches: int
    in_band: bool


def patient_sum(decisions: np.ndarray) -> float:
    """S: float64 sum in sequential order (as the reference did), so it is bitwise reproducible."""
    total = 0.0
    for value in np.asarray(decisions, dtype=np.float64).tolist():
        total += value
    return total


def majority_label(votes_small_intestine: int, n_patches: int) -> str:
    """Small intestine iff strictly more than half the patches vote for it (50/50 goes to pancreas)."""
    return SMALL_INTESTINE if 2 * votes_small_intestine > n_patches else PANCREAS


def in_band(s: float, lower: float, upper: float) -> bool:
    """Strict inclusion: a sum equal to a bound is not uncertain."""
    return lower < s < upper


def patient_verdict(decisions: np.ndarray, band: tuple[float, float] | None) -> PatientVerdict:
    """Verdict from per-patch decision values (> 0 = small intestine) and an optional band (lower, upper)."""
    decisions = np.asarray(decisions, dtype=np.float64)
    if decisions.ndim != 1 or decisions.size == 0:
        raise ValueError("decisions must be a non-empty 1-d array")
    if not np.all(np.isfinite(decisions)):
        raise ValueError("decision values contain NaN or infinity")
    s = patient_sum(decisions)
    votes = int(np.count_nonzero(decisions > 0))
    verdict = verdict_from_sum(s, votes, decisions.size, band)
    return PatientVerdict(verdict=verdict, majority=majority_label(votes, decisions.size),
                          patient_sum=s, votes_small_intestine=votes, n_patches=int(decisions.size),
                          in_band=verdict == UNCERTAIN)


def bag_verdict(score: float, contributions: np.ndarray, band: tuple[float, float] | None) -> PatientVerdict:
    """Verdict of a bag head (ABMIL / KMIL): S is the bag score and, outside the band, its sign decides (the bag is
    the one voter); the patches' contributions are counted by sign for the report, they do not vote."""
    contributions = np.asarray(contributions, dtype=np.float64)
    if contributions.ndim != 1 or contributions.size == 0:
        raise ValueError("contributions must be a non-empty 1-d array")
    if not (math.isfinite(score) and np.all(np.isfinite(contributions))):
        raise ValueError("bag score or contributions contain NaN or infinity")
    sign = majority_label(int(score > 0), 1)
    verdict = verdict_from_sum(score, int(score > 0), 1, band)
    return PatientVerdict(verdict=verdict, majority=sign, patient_sum=float(score),
                          votes_small_intestine=int(np.count_nonzero(contributions > 0)),
                          n_patches=int(contributions.size), in_band=verdict == UNCERTAIN)


def verdict_from_sum(s: float, votes_small_intestine: int, n_patches: int,
                     band: tuple[float, float] | None) -> str:
    """The same rule when only S and the vote count are known (calibration tables, evaluation)."""
    if not math.isfinite(s):
        raise ValueError("patient sum is NaN or infinite")
    if band is not None and in_band(s, band[0], band[1]):
        return UNCERTAIN
    return majority_label(votes_small_intestine, n_patches)
