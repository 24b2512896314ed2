"""Seed 002's comparison statistics against independent implementations: DeLong's fast midrank algorithm against
his original pairwise definition (and scikit-learn's AUC), kappa and McNemar against statsmodels, kappa against
a published worked example."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.inter_rater import cohens_kappa

from netorigin.calibration.comparisons import cohen_kappa, delong, mcnemar_exact
from netorigin.calibration.errors import InputDataError


def pairwise_delong(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. 1988 as written: the kernel over every (positive, negative) pair, O(m n)."""
    pos, neg = scores[:, truth], scores[:, ~truth]
    kernel = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    auc = kernel.mean(axis=(1, 2))
    v10, v01 = kernel.mean(axis=2), kernel.mean(axis=1)  # per positive, per negative
    m, n = pos.shape[1], neg.shape[1]
    s10 = (v10 - auc[:, None]) @ (v10 - auc[:, None]).T / (m - 1)
    s01 = (v01 - auc[:, None]) @ (v01 - auc[:, None]).T / (n - 1)
    return auc, s10 / m + s01 / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_equals_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(60) < 0.3
    first = np.round(rng.normal(truth * 1.0, 1.0), 1)  # rounded: ties within and across classes
    second = np.round(first + rng.normal(0, 0.8, 60), 1)
    result = delong(truth, first, second)
    auc, covariance = pairwise_delong(truth, np.stack([first, second]))
    np.testing.assert_allclose(result.auc, auc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.covariance, covariance, rtol=1e-10, atol=1e-15)
    assert result.auc[0] == pytest.approx(roc_auc_score(truth, first), abs=1e-12)
    z = (auc[0] - auc[1]) / np.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    from scipy.stats import norm

    assert result.p_difference() == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    low, high = result.ci95()
    assert low < result.auc[0] < high


def test_delong_refuses_a_class_of_one_patient():
    with pytest.raises(InputDataError, match="at least two patients in the class"):
        delong([True, False, False, False], [0.9, 0.1, 0.2, 0.3])


def test_kappa_equals_a_published_example_and_statsmodels():
    # Wikipedia's worked example ("Cohen's kappa"): 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4
    reference = ["yes"] * 25 + ["no"] * 25
    rated = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(reference, rated, ["yes", "no"]).kappa == pytest.approx(0.4, abs=1e-12)
    rng = np.random.default_rng(3)
    labels = ["cyst", "hemangioma", "fnh", "hcc"]
    truth = rng.integers(0, 4, 120)
    calls = np.where(rng.random(120) < 0.7, truth, rng.integers(0, 4, 120))
    ours = cohen_kappa([labels[i] for i in truth], [labels[i] for i in calls], labels)
    table = np.zeros((4, 4))
    np.add.at(table, (truth, calls), 1)
    theirs = cohens_kappa(table)
    assert ours.kappa == pytest.approx(theirs.kappa, abs=1e-12)
    assert ours.se == pytest.approx(theirs.std_kappa, rel=1e-10)
    assert ours.se_null == pytest.approx(theirs.std_kappa0, rel=1e-10)
    assert ours.p == pytest.approx(theirs.pvalue_two_sided, rel=1e-8)


def test_kappa_names_an_unknown_category():
    with pytest.raises(InputDataError, match="unknown categories hcc"):
        cohen_kappa(["cyst", "hcc"], ["cyst", "cyst"], ["cyst", "fnh"])


@pytest.mark.parametrize("seed", [0, 1])
def test_mcnemar_exact_equals_statsmodels(seed):
    rng = np.random.default_rng(seed)
    model = rng.random(80) < 0.8
    readers = rng.random(80) < 0.65
    ours = mcnemar_exact(model, readers)
    table = [[int((model & readers).sum()), int((model & ~readers).sum())],
             [int((~model & readers).sum()), int((~model & ~readers).sum())]]
    assert (ours.first_only, ours.second_only) == (table[0][1], table[1][0])
    assert ours.p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
