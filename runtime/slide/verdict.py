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


DEFAULT_CLASSES = (PANCREAS, SMALL_INTESTINE)  # the contract's classes as `train` writes them


def verdict_text(verdict: str) -> str:
    """A verdict (one of the model's class names, or uncertain) as the page and the summary show it."""
    return verdict.replace("_", " ").upper()


def patient_sum(decisions: np.ndarray) -> float:
    """float64 sum in sequential order (as the reference did), so it is bitwise reproducible."""
    total = 0.0
    for value in np.asarray(decisions, dtype=np.float64).tolist():
        total += value
    return total


def case_score(decisions: np.ndarray, bag_score: float | None = None) -> tuple[float, int, int]:
    """A case's S, its votes for class 1 and its number of voters: the one place S is computed (runtime, `train`,
    calibration and evaluation). Patch-sum heads: S is the sequential float64 sum of the decisions and every patch
    votes; bag heads: S is the bag score and the bag is the one voter."""
    if bag_score is not None:
        return float(bag_score), int(bag_score > 0), 1
    d = np.asarray(decisions, dtype=np.float64)
    return patient_sum(d), int(np.count_nonzero(d > 0)), int(d.size)


def majority_label(votes: int, voters: int, classes: tuple[str, str] = DEFAULT_CLASSES) -> str:
    """Class 1 iff strictly more than half the voters vote for it (50/50 goes to class 0)."""
    return classes[1] if 2 * votes > voters else classes[0]


def in_band(s: float, lower: float, upper: float) -> bool:
    """Strict inclusion: a sum equal to a bound is not uncertain."""
    return lower < s < upper


def case_verdict(decisions: np.ndarray, bag_score: float | None, band: tuple[float, float] | None,
                 classes: tuple[str, str] = DEFAULT_CLASSES) -> PatientVerdict:
    """Verdict from per-patch decision values (> 0 = class 1) or, for a bag head (ABMIL / KMIL), its bag score
    (the patches' contributions are then counted by sign for the report; they do not vote), and an optional band
    (lower, upper). The class names are the model's."""
    decisions = np.asarray(decisions, dtype=np.float64)
    if decisions.ndim != 1 or decisions.size == 0:
        raise ValueError("decisions must be a non-empty 1-d array")
    if not (np.all(np.isfinite(decisions)) and (bag_score is None or math.isfinite(bag_score))):
        raise ValueError("decision values or bag score contain NaN or infinity")
    s, votes, voters = case_score(decisions, bag_score)
    verdict = verdict_from_sum(s, votes, voters, band, classes)
    return PatientVerdict(verdict=verdict, majority=majority_label(votes, voters, classes), patient_sum=s,
                          votes_small_intestine=int(np.count_nonzero(decisions > 0)), n_patches=int(decisions.size),
                          in_band=verdict == UNCERTAIN)


def patient_verdict(decisions: np.ndarray, band: tuple[float, float] | None) -> PatientVerdict:
    """A patch-sum head's verdict (evaluation and tests)."""
    return case_verdict(decisions, None, band)


def bag_verdict(score: float, contributions: np.ndarray, band: tuple[float, float] | None) -> PatientVerdict:
    """A bag head's verdict (evaluation and tests)."""
    return case_verdict(contributions, score, band)


def verdict_from_sum(s: float, votes: int, voters: int, band: tuple[float, float] | None,
                     classes: tuple[str, str] = DEFAULT_CLASSES) -> str:
    """The rule when only S and the vote count are known (calibration tables, evaluation)."""
    if not math.isfinite(s):
        raise ValueError("patient sum is NaN or infinite")
    if band is not None and in_band(s, band[0], band[1]):
        return UNCERTAIN
    return majority_label(votes, voters, classes)
