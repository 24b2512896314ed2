"""The statistics seed 002 reports when it compares classifiers and readers: per-class ROC AUC with DeLong's
variance (95 % CI, and the test between two models scored on the same patients), McNemar's exact test between
two raters' correct calls, and Cohen's kappa against the reference standard with its standard errors.

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) by Sun & Xu's midrank algorithm (IEEE SPL 2014); kappa's
variances after Fleiss, Cohen & Everitt (Psychol. Bull. 1969); McNemar exact = a two-sided binomial test on the
discordant pairs (what the seed calls "binomial distribution for exact probabilistic method").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm

from .errors import InputDataError

Z95 = float(norm.ppf(0.975))


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values))
    start = 0
    while start < len(values):
        end = start
        while end < len(values) and ordered[end] == ordered[start]:
            end += 1
        ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
        start = end
    return ranks


@dataclass(frozen=True)
class DelongResult:
    """AUCs of one or more scores on the same patients, with DeLong's covariance matrix."""

    auc: np.ndarray
    covariance: np.ndarray

    def ci95(self, index: int = 0) -> tuple[float, float]:
        """Normal interval on the AUC, clipped to [0, 1] (as pROC reports it)."""
        half = Z95 * float(np.sqrt(max(self.covariance[index, index], 0.0)))
        return max(0.0, float(self.auc[index]) - half), min(1.0, float(self.auc[index]) + half)

    def p_difference(self, first: int = 0, second: int = 1) -> float:
        """Two-sided p of DeLong's test that two correlated AUCs are equal."""
        variance = self.covariance[first, first] + self.covariance[second, second] - 2 * self.covariance[first, second]
        difference = float(self.auc[first] - self.auc[second])
        if variance <= 0:
            return 1.0 if difference == 0 else 0.0
        return float(2 * norm.sf(abs(difference) / np.sqrt(variance)))


def delong(positive: Sequence[bool], *scores: Sequence[float]) -> DelongResult:
    """AUC of each score for `positive` (one class against the rest) and their DeLong covariance."""
    truth = np.asarray(positive, dtype=bool)
    if truth.ndim != 1 or not scores:
        raise InputDataError("DeLong needs one label per patient and at least one score")
    table = np.asarray(scores, dtype=float)
    if table.shape[1] != len(truth) or not np.isfinite(table).all():
        raise InputDataError("DeLong needs one finite score per patient for every model")
    m, n = int(truth.sum()), int((~truth).sum())
    if m < 2 or n < 2:
        raise InputDataError(f"DeLong needs at least two patients in the class and two outside it ({m} and {n})")
    ranks_all = np.stack([_midranks(row) for row in table])
    ranks_pos = np.stack([_midranks(row[truth]) for row in table])
    ranks_neg = np.stack([_midranks(row[~truth]) for row in table])
    auc = (ranks_all[:, truth].sum(axis=1) / m - (m + 1) / 2) / n
    v_pos = (ranks_all[:, truth] - ranks_pos) / n  # placement of each positive among the negatives
    v_neg = 1.0 - (ranks_all[:, ~truth] - ranks_neg) / m  # of each negative among the positives
    covariance = np.atleast_2d(np.cov(v_pos)) / m + np.atleast_2d(np.cov(v_neg)) / n
    return DelongResult(auc=auc, covariance=covariance)


@dataclass(frozen=True)
class McNemarResult:
    """Discordant pairs (`first_only` right where the second was wrong, and the reverse) and the exact p."""

    first_only: int
    second_only: int
    p: float


def mcnemar_exact(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> McNemarResult:
    """Exact McNemar test of two raters' correct calls on the same patients."""
    a, b = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise InputDataError("McNemar needs both raters' calls on the same patients")
    first_only, second_only = int((a & ~b).sum()), int((~a & b).sum())
    discordant = first_only + second_only
    p = 1.0 if discordant == 0 else float(binomtest(first_only, discordant, 0.5).pvalue)
    return McNemarResult(first_only, second_only, p)


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa with its large-sample standard error, the error under no agreement beyond chance (for the
    z-test), the 95 % interval and the test's two-sided p."""

    kappa: float
    se: float
    se_null: float
    ci95: tuple[float, float]
    p: float


def cohen_kappa(reference: Sequence[str], rated: Sequence[str], labels: Sequence[str]) -> KappaResult:
    """Agreement of `rated` with `reference` over the categories `labels`."""
    index = {label: i for i, label in enumerate(labels)}
    if len(reference) != len(rated) or not reference:
        raise InputDataError("kappa needs one rating per reference case")
    unknown = sorted({str(v) for v in (*reference, *rated)} - set(index))
    if unknown:
        raise InputDataError(f"kappa: unknown categories {', '.join(unknown)}")
    counts = np.zeros((len(labels), len(labels)))
    for truth, call in zip(reference, rated, strict=True):
        counts[index[truth], index[call]] += 1
    n = counts.sum()
    p = counts / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    observed, expected = float(np.trace(p)), float(rows @ cols)
    if expected == 1.0:
        raise InputDataError("kappa is undefined when every case falls in one category for both raters")
    kappa = (observed - expected) / (1 - expected)
    diagonal = np.diag(p) * (1 - (rows + cols) * (1 - kappa)) ** 2
    off = p * (cols[:, None] + rows[None, :]) ** 2
    np.fill_diagonal(off, 0.0)
    variance = (diagonal.sum() + (1 - kappa) ** 2 * off.sum() - (kappa - expected * (1 - kappa)) ** 2) / (
        n * (1 - expected) ** 2)
    variance_null = (expected + expected ** 2 - float((rows * cols * (rows + cols)).sum())) / (n * (1 - expected) ** 2)
    se, se_null = float(np.sqrt(max(variance, 0.0))), float(np.sqrt(max(variance_null, 0.0)))
    p_value = float(2 * norm.sf(abs(kappa) / se_null)) if se_null > 0 else float("nan")
    return KappaResult(kappa=float(kappa), se=se, se_null=se_null, ci95=(kappa - Z95 * se, kappa + Z95 * se),
                       p=p_value)
