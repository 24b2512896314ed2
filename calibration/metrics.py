"""Per-class sensitivity, specificity and PPV with exact (Clopper-Pearson) 95 % intervals."""

from __future__ import annotations

from scipy.stats import beta

from netorigin.runtime.slide.verdict import PANCREAS, SMALL_INTESTINE


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval; (nan, nan) when there are no trials."""
    if trials == 0:
        return float("nan"), float("nan")
    alpha = 1 - level
    lower = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    upper = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lower, upper


def rate(successes: int, trials: int) -> dict:
    """A proportion with its count and exact 95 % interval (nan when there are no trials)."""
    lower, upper = clopper_pearson(successes, trials)
    return {"value": successes / trials if trials else float("nan"), "successes": successes, "trials": trials,
            "ci95": [lower, upper]}


def class_metrics(confusion: dict[str, dict[str, int]]) -> dict[str, dict]:
    """Sensitivity (of the true class), specificity (everyone else, others included, not called it), PPV."""
    out = {}
    for cls in (PANCREAS, SMALL_INTESTINE):
        positives = sum(confusion[cls].values())
        tp = confusion[cls][cls]
        negatives = sum(sum(row.values()) for truth, row in confusion.items() if truth != cls)
        fp = sum(row[cls] for truth, row in confusion.items() if truth != cls)
        called = tp + fp
        out[cls] = {"sensitivity": rate(tp, positives), "specificity": rate(negatives - fp, negatives),
                    "ppv": rate(tp, called)}
    return out
