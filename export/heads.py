"""Patch classifiers over embeddings, scikit-learn estimators with explicit parameters.

`reference` is what produced the paper's tables (PCA(0.95) + RBF SVC, gamma='scale');
`paper-text` is what the paper's text says (no PCA, gamma='auto'); `linear-svm` and `logistic` are the
paper's other evaluated heads. All expose `decision_function` (> 0 = small intestine) and are summed per patient.
`abmil` and `kmil` (mil.py) score a patient's bag as a whole; `fit_scorer` fits either family for evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from netorigin.calibration.bands_io import PatientSum
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.errors import InputDataError
from netorigin.calibration.scoring import sums_by_patient

from .mil import MIL_KINDS, MilConfig, MilHead, fit_mil

HEAD_KINDS = ("reference", "paper-text", "linear-svm", "logistic")
# libsvm's kernel cache only memoises kernel columns, so a fit is bit-identical at any size (a test checks it); at
# the default 200 MB a paper-size leave-one-out fold (9,000 patches, a 324 MB kernel) recomputes columns, at 512
# it never does.
SVC_CACHE_MB = 512
ALL_HEADS = HEAD_KINDS + MIL_KINDS


def one_blas_thread() -> threadpool_limits:
    """Fit and score on one BLAS thread: BLAS rounds differently with its thread count (PCA's SVD and projections
    moved S by up to 2e-9 between 1 and 2 threads at the paper's size), so this is what lets `evaluate --workers N`
    (one thread per Dask worker) and machines with other core counts (same BLAS build and CPU type) reproduce a
    local run bit for bit."""
    return threadpool_limits(limits=1)


def make_head(kind: str = "reference", seed: int = 0) -> Pipeline:
    """An unfitted pipeline for `kind`."""
    if kind == "reference":
        steps = [("pca", PCA(n_components=0.95, random_state=seed)),
                 ("clf", SVC(C=1.0, kernel="rbf", gamma="scale", cache_size=SVC_CACHE_MB))]
    elif kind == "paper-text":
        steps = [("clf", SVC(C=1.0, kernel="rbf", gamma="auto", cache_size=SVC_CACHE_MB))]
    elif kind == "linear-svm":
        steps = [("pca", PCA(n_components=0.95, random_state=seed)),
                 ("clf", SVC(C=1.0, kernel="linear", cache_size=SVC_CACHE_MB))]
    elif kind == "logistic":
        steps = [("pca", PCA(n_components=0.95, random_state=seed)),
                 ("clf", LogisticRegression(C=1.0, max_iter=2000))]
    else:
        raise InputDataError(f"unknown head {kind!r} (choose from {', '.join(HEAD_KINDS)})")
    return Pipeline(steps)


def fit_head(kind: str, embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> Pipeline:
    """Fit on float64 embeddings with labels 0 = pancreas, 1 = small intestine."""
    labels = np.asarray(labels)
    if set(np.unique(labels).tolist()) != {0, 1}:
        raise InputDataError("fitting needs patches of both pancreas (0) and small intestine (1)")
    with one_blas_thread():
        return make_head(kind, seed).fit(np.asarray(embeddings, dtype=np.float64), labels)


def fit_embeddings(emb: Embeddings, kind: str, seed: int, mil: MilConfig = MilConfig()) -> Pipeline | MilHead:
    """Fit on pancreas/small-intestine patches only (others never train the classifier)."""
    mask = emb.labels < 2
    if not mask.any():
        raise InputDataError("no pancreas or small-intestine patches to fit on")
    if kind in MIL_KINDS:
        return fit_mil(kind, emb, seed, mil)  # it keeps the labelled patients itself
    return fit_head(kind, emb.embeddings[mask], emb.labels[mask], seed)


@dataclass(frozen=True)
class PatchSumScorer:
    """A patch classifier scored as the paper does: S = sum of the patches' decisions, one vote per patch."""

    pipeline: Pipeline

    def score(self, emb: Embeddings, on_patient: Callable[[], None] = lambda: None
              ) -> tuple[list[PatientSum], np.ndarray]:
        """Each patient's patches in a call of their own, as the runtime scores a case alone: a patient's decisions
        never depend on which other patients share the call (BLAS blocking moves their last bits otherwise)."""
        decisions = np.empty(len(emb.embeddings), dtype=np.float64)
        with one_blas_thread():
            for _, mask in emb.by_patient():
                decisions[mask] = self.pipeline.decision_function(emb.embeddings[mask].astype(np.float64))
                on_patient()
        return sums_by_patient(emb.patients, emb.labels, decisions), decisions


def as_scorer(fitted: Pipeline | MilHead) -> PatchSumScorer | MilHead:
    """A fitted head (as `fit` saves it) as the protocols and calibration score patients with it."""
    return fitted if isinstance(fitted, MilHead) else PatchSumScorer(fitted)


def fit_scorer(kind: str, emb: Embeddings, seed: int, mil: MilConfig = MilConfig()) -> PatchSumScorer | MilHead:
    """Any head, fitted on the labelled patients of `emb`, as evaluation's protocols score it."""
    return as_scorer(fit_embeddings(emb, kind, seed, mil))


@dataclass(frozen=True)
class HeadArrays:
    """A fitted head as plain float64 arrays: what the ONNX graph is built from."""

    kind: str  # "rbf" or "linear"
    pca_mean: np.ndarray | None
    pca_components: np.ndarray | None
    support_vectors: np.ndarray | None = None
    dual_coef: np.ndarray | None = None
    gamma: float | None = None
    weights: np.ndarray | None = None
    intercept: float = 0.0

    def describe(self) -> dict:
        out = {"kind": self.kind, "pca_components": None if self.pca_components is None
               else int(self.pca_components.shape[0]), "intercept": self.intercept}
        if self.kind == "rbf":
            out.update(n_support_vectors=int(self.support_vectors.shape[0]), gamma=self.gamma, C=1.0)
        return out


def head_arrays(pipeline: Pipeline) -> HeadArrays:
    """Extract the decision function's parameters from a fitted pipeline."""
    pca = pipeline.named_steps.get("pca")
    clf = pipeline.named_steps["clf"]
    mean = None if pca is None else pca.mean_.astype(np.float64)
    comps = None if pca is None else pca.components_.astype(np.float64)
    if pca is not None and pca.whiten:
        raise InputDataError("whitened PCA is not supported by the exporter")
    if isinstance(clf, SVC) and clf.kernel == "rbf":
        return HeadArrays(kind="rbf", pca_mean=mean, pca_components=comps,
                          support_vectors=clf.support_vectors_.astype(np.float64),
                          dual_coef=clf.dual_coef_[0].astype(np.float64), gamma=float(clf._gamma),
                          intercept=float(clf.intercept_[0]))
    if hasattr(clf, "coef_"):
        return HeadArrays(kind="linear", pca_mean=mean, pca_components=comps,
                          weights=np.asarray(clf.coef_, dtype=np.float64).reshape(-1),
                          intercept=float(np.ravel(clf.intercept_)[0]))
    raise InputDataError(f"cannot export classifier {type(clf).__name__}")
