"""The paper's evaluation protocols on patch embeddings: binary LOO, binary external (Table 3), extended LOO,
external test.

The head is fitted by a function the caller passes (`FitHead`), so evaluation does not depend on the
training side's classifiers.

Column alignment in the extended protocol: results are indexed by k, the number of other-origin
calibration patients a band may hold (c = k/o over the full cohort's o). When the held-out patient is
itself "other", that fold has o - 1 others; its column k uses the fold's band k' = min(k, o - 1), so the
widest column (c = 1) uses that fold's widest band.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from netorigin.runtime.batch.cluster import DaskMapper, LocalMapper
from netorigin.runtime.model.bands import BandTable
from netorigin.runtime.slide.verdict import PANCREAS, SMALL_INTESTINE, UNCERTAIN, verdict_from_sum

from .bands import calibrate_bands
from .bands_io import PatientSum
from .embeddings import Embeddings
from .errors import InputDataError
from .labels import LABEL_NAMES
from .splits import stratified_split

TRUE_CLASSES = LABEL_NAMES
PREDICTED = (PANCREAS, SMALL_INTESTINE, UNCERTAIN)


class PatientScorer(Protocol):
    """A fitted head as the protocols use it: per-patient S (with its voters) and per-patch decision values.

    Patch heads sum their patches' decisions (one vote per patch); bag heads give one score per patient (the bag is
    the one voter, so the sign of S decides outside the band)."""

    def score(self, emb: Embeddings) -> tuple[list[PatientSum], np.ndarray]: ...


# (labelled fit patients' embeddings, seed) -> fitted head; the training side supplies it (e.g. PCA + SVM, ABMIL).
FitHead = Callable[[Embeddings, int], PatientScorer]
Mapper = LocalMapper | DaskMapper


@dataclass
class PatientOutcome:
    patient: str
    truth: str
    patient_sum: float
    votes_small_intestine: int
    n_patches: int
    predictions: list[str]  # one per column k = 0..o (extended) or [majority] (binary)
    patch_accuracy: float | None = None


def _score_patient(scorer: PatientScorer, emb: Embeddings, patient: str) -> tuple[PatientSum, np.ndarray]:
    (ps,), decisions = scorer.score(emb.select(emb.patients == patient))
    return ps, decisions


def _binary_outcome(scorer: PatientScorer, emb: Embeddings, patient: str, label: int) -> PatientOutcome:
    ps, d = _score_patient(scorer, emb, patient)
    majority = verdict_from_sum(ps.s, ps.votes_small_intestine, ps.n_patches, None)
    pooled = d != 0  # a bag head's patch left out of its pooling has no side
    return PatientOutcome(patient, TRUE_CLASSES[label], ps.s, ps.votes_small_intestine, int(d.size), [majority],
                          float(np.mean((d[pooled] > 0) == label)) if pooled.any() else float("nan"))


def binary_fold(held_out: tuple[str, int], emb: Embeddings, fit: FitHead, seed: int) -> PatientOutcome:
    """One fold of the binary protocol: fit on every other labelled patient, the head's vote on this one."""
    patient, label = held_out
    scorer = fit(emb.select((emb.labels < 2) & (emb.patients != patient)), seed)
    return _binary_outcome(scorer, emb, patient, label)


def _binary_summary(protocol: str, outcomes: list[PatientOutcome], head: str, seed: int) -> dict:
    n_patches = sum(o.n_patches for o in outcomes)
    return {
        "protocol": protocol, "head": head, "seed": seed,
        "patch_accuracy": sum(o.patch_accuracy * o.n_patches for o in outcomes) / n_patches,
        "patient_accuracy": float(np.mean([o.predictions[0] == o.truth for o in outcomes])),
        "per_class_patient_accuracy": {c: float(np.mean([o.predictions[0] == c for o in outcomes if o.truth == c]))
                                       for c in (PANCREAS, SMALL_INTESTINE)},
        "patients": [o.__dict__ for o in outcomes],
    }


def binary_folds(emb: Embeddings) -> list[tuple[str, int]]:
    """The binary protocol's folds: each labelled (pancreas / small-intestine) patient and its label."""
    return [(p, lab) for p, lab in emb.patient_table() if lab < 2]


def extended_folds(emb: Embeddings) -> list[tuple[int, str]]:
    """The extended protocol's folds: every patient with its index (which seeds the fold's split)."""
    return [(index, patient) for index, (patient, _) in enumerate(emb.patient_table())]


def binary_loo(emb: Embeddings, fit: FitHead, head: str, seed: int = 0, mapper: Mapper = LocalMapper()) -> dict:
    """Leave one labelled patient out; fit on all other labelled patients; majority vote (Table 2 style).
    Folds are independent: `mapper` may run them on a Dask cluster (results in the same order)."""
    patients = binary_folds(emb)
    if len({lab for _, lab in patients}) < 2:
        raise InputDataError("the binary protocol needs pancreas and small-intestine patients")
    outcomes = mapper(binary_fold, patients, scatter=("emb",), emb=emb, fit=fit, seed=seed)
    return _binary_summary("binary-loo", outcomes, head, seed)


def binary_external(train: Embeddings, test: Embeddings, fit: FitHead, head: str, seed: int = 0) -> dict:
    """The paper's Table 3: fit on every labelled patient of `train`, then patch- and patient-level accuracy on
    the labelled patients of `test` (no bands)."""
    if len({lab for _, lab in train.patient_table() if lab < 2}) < 2:
        raise InputDataError("the binary external protocol needs pancreas and small-intestine training patients")
    patients = [(p, lab) for p, lab in test.patient_table() if lab < 2]
    if not patients:
        raise InputDataError("the external cohort has no pancreas or small-intestine patients")
    scorer = fit(train.select(train.labels < 2), seed)
    outcomes = [_binary_outcome(scorer, test, patient, label) for patient, label in patients]
    return _binary_summary("binary-external", outcomes, head, seed)


def _fit_and_calibrate(emb: Embeddings, pool: list[tuple[str, int]], others: list[str], fit: FitHead,
                       rng_seed: int, fit_fraction: float):
    """Stratified split of `pool` (fit / threshold), fit the head, bands from the threshold part + others."""
    split = stratified_split(pool + [(p, 2) for p in others], fit_fraction, rng_seed)
    scorer = fit(emb.select(np.isin(emb.patients, split.fit)), rng_seed)
    sums, _ = scorer.score(emb.select(np.isin(emb.patients, split.calibration)))
    table = calibrate_bands([s.s for s in sums if s.label < 2], [s.s for s in sums if s.label == 2])
    return scorer, table


def _predict_columns(scorer: PatientScorer, table: BandTable, emb: Embeddings, patient: str,
                     o_full: int) -> PatientOutcome:
    ps, d = _score_patient(scorer, emb, patient)
    predictions = []
    for k in range(o_full + 1):
        band = table.by_k(min(k, table.n_other))
        predictions.append(verdict_from_sum(ps.s, ps.votes_small_intestine, ps.n_patches,
                                            None if k == 0 else (band.lower, band.upper)))
    return PatientOutcome(patient, TRUE_CLASSES[ps.label], ps.s, ps.votes_small_intestine, int(d.size), predictions)


def extended_fold(fold: tuple[int, str], emb: Embeddings, fit: FitHead, seed: int,
                  fit_fraction: float) -> PatientOutcome:
    """One fold of the extended protocol: its own seeded split, head and bands; every column for this patient."""
    index, patient = fold
    table = emb.patient_table()
    others = [p for p, lab in table if lab == 2]
    pool = [(p, lab) for p, lab in table if lab < 2 and p != patient]
    fold_others = [p for p in others if p != patient]
    scorer, bands = _fit_and_calibrate(emb, pool, fold_others, fit, seed * 100_003 + index, fit_fraction)
    return _predict_columns(scorer, bands, emb, patient, len(others))


def extended_loo(emb: Embeddings, fit: FitHead, head: str, seed: int = 0, fit_fraction: float = 0.6,
                 mapper: Mapper = LocalMapper()) -> dict:
    """Leave any patient out; per fold a seeded stratified 60/40 split fixes the head and the thresholds.
    Folds are independent: `mapper` may run them on a Dask cluster (results in the same order)."""
    table = emb.patient_table()
    others = [p for p, lab in table if lab == 2]
    if len(others) < 2:
        raise InputDataError("the extended protocol needs at least two other-origin patients")
    folds = extended_folds(emb)
    outcomes = mapper(extended_fold, folds, scatter=("emb",), emb=emb, fit=fit, seed=seed,
                      fit_fraction=fit_fraction)
    return _summarise("extended-loo", outcomes, len(others), head, seed)


def external_test(train: Embeddings, test: Embeddings, fit: FitHead, head: str, seed: int = 0,
                  fit_fraction: float = 0.6) -> dict:
    """Fit and calibrate on `train` (one seeded 60/40 split), apply unchanged to every patient of `test`."""
    table = train.patient_table()
    others = [p for p, lab in table if lab == 2]
    if not others:
        raise InputDataError("the training cohort needs other-origin patients to calibrate the bands")
    scorer, bands = _fit_and_calibrate(train, [(p, lab) for p, lab in table if lab < 2], others, fit, seed,
                                         fit_fraction)
    outcomes = [_predict_columns(scorer, bands, test, p, len(others)) for p, _ in test.patient_table()]
    return _summarise("external", outcomes, len(others), head, seed)


def confusion(outcomes: list[PatientOutcome], column: int) -> dict[str, dict[str, int]]:
    """True pancreas / small intestine / other x predicted pancreas / small intestine / uncertain."""
    return {t: {p: sum(1 for o in outcomes if o.truth == t and o.predictions[column] == p) for p in PREDICTED}
            for t in TRUE_CLASSES}


def curves(outcomes: list[PatientOutcome], o_full: int) -> dict[str, dict[str, list[float]]]:
    """Per true class, the fraction predicted as each class or uncertain, for every column c = k/o."""
    out = {}
    for truth in TRUE_CLASSES:
        group = [o for o in outcomes if o.truth == truth]
        out[truth] = {p: [sum(o.predictions[k] == p for o in group) / len(group) if group else float("nan")
                          for k in range(o_full + 1)] for p in PREDICTED}
    return out


def _summarise(protocol: str, outcomes: list[PatientOutcome], o_full: int, head: str, seed: int) -> dict:
    return {"protocol": protocol, "head": head, "seed": seed, "o": o_full,
            "c": [k / o_full for k in range(o_full + 1)],
            "column_alignment": "column k uses each fold's band holding k others (k' = min(k, o_fold) when an "
                                "other-origin patient is held out and the fold has o - 1 others)",
            "confusion": {f"{k / o_full:g}": confusion(outcomes, k) for k in range(o_full + 1)},
            "curves": curves(outcomes, o_full),
            "patients": [o.__dict__ for o in outcomes]}
