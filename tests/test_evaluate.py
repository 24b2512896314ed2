"""The paper's protocols on synthetic embeddings, and the `calibrate` / `evaluate` commands."""

from __future__ import annotations

import json
import os
from functools import partial

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from netorigin.calibration import protocols
from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.metrics import class_metrics, clopper_pearson
from netorigin.calibration.protocols import binary_loo, extended_loo, external_test
from netorigin.export.heads import SVC_CACHE_MB, fit_head, fit_scorer, make_head, one_blas_thread
from netorigin.runtime.slide.verdict import UNCERTAIN, patient_verdict

from .helpers import run_cli

REFERENCE = partial(fit_scorer, "reference")


def cohort(seed: int, n_p: int = 8, n_si: int = 8, n_other: int = 4, patches: int = 20, shift: float = 0.6):
    rng = np.random.default_rng(seed)
    rows, pats, labs = [], [], []
    for i, lab in enumerate([0] * n_p + [1] * n_si + [2] * n_other):
        centre = {0: -shift, 1: shift, 2: rng.uniform(-0.3, 0.3)}[lab]
        rows.append(rng.normal(centre, 1.0, (patches, 32)))
        pats += [f"s{seed}p{i}"] * patches
        labs += [lab] * patches
    n = len(pats)
    return Embeddings(np.concatenate(rows).astype(np.float32), np.array(pats), np.array(labs),
                      np.array(["A"] * n), np.array(["s"] * n), np.array([str(i) for i in range(n)]))


def test_binary_loo_accuracy_on_separable_cohort():
    result = binary_loo(cohort(0), REFERENCE, "reference")
    assert result["patient_accuracy"] >= 0.9 and 0.5 < result["patch_accuracy"] <= 1.0
    assert len(result["patients"]) == 16  # others are not part of the binary task


def test_svm_kernel_cache_size_changes_no_bit_of_the_fit():
    """The heads' larger libsvm cache is a speed setting only: a fit that must recompute kernel columns (a 1 MB
    cache, smaller than this 1.4 MB kernel) gives the same support vectors and decisions, bit for bit."""
    rng = np.random.default_rng(3)
    x = rng.gamma(1.5, 0.3, (600, 64))
    y = np.repeat([0, 1], 300)
    x[y == 1, :8] += 0.1
    for kind in ("reference", "paper-text", "linear-svm"):
        ours = fit_head(kind, x, y, seed=0)
        assert ours.named_steps["clf"].cache_size == SVC_CACHE_MB
        with one_blas_thread():  # as fit_head fits: only the cache differs
            tiny_cache = make_head(kind, 0).set_params(clf__cache_size=1).fit(x, y)
        np.testing.assert_array_equal(ours.named_steps["clf"].dual_coef_, tiny_cache.named_steps["clf"].dual_coef_)
        np.testing.assert_array_equal(ours.decision_function(x), tiny_cache.decision_function(x))


def test_a_patients_decisions_do_not_depend_on_who_else_is_scored():
    """Each patient is scored in a call of its own (as the runtime scores a case alone, and as `calibrate`'s bar
    counts them): the same bits alone as among a cohort of uneven patch counts (one call for all patches moved the
    last bits of a 37-patch patient, measured)."""
    rng = np.random.default_rng(4)
    counts = [37, 100, 61, 100, 13]
    n = sum(counts)
    x = rng.gamma(1.5, 0.3, (n, 256))
    patients = np.repeat([f"p{i}" for i in range(len(counts))], counts)
    labels = np.repeat([i % 2 for i in range(len(counts))], counts)
    x[labels == 1, :20] += 0.1
    emb = Embeddings(x.astype(np.float32), patients, labels, np.array(["A"] * n), np.array(["s"] * n),
                     np.arange(n).astype(str))
    scorer = fit_scorer("reference", emb, 0)
    steps = []
    together, decisions = scorer.score(emb, lambda: steps.append(1))
    assert len(steps) == len(counts)
    for row in together:
        (alone,), own = scorer.score(emb.select(patients == row.patient))
        assert alone.s == row.s
        np.testing.assert_array_equal(own, decisions[patients == row.patient])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="BLAS runs one thread on one core: nothing to compare")
def test_a_head_gives_the_same_bits_whatever_threads_its_caller_runs():
    """`evaluate --workers` (one BLAS thread per Dask worker) must equal a local run on two cores: the head's fit
    and decisions cannot depend on the caller's thread settings (BLAS rounds differently at 2 threads than at 1)."""
    rng = np.random.default_rng(1)
    n = 600
    labels = np.repeat([0, 1], n // 2)
    x = rng.gamma(1.5, 0.3, (n, 256))
    x[labels == 1, :20] += 0.1
    emb = Embeddings(x.astype(np.float32), np.repeat([f"p{i}" for i in range(20)], n // 20), labels,
                     np.array(["A"] * n), np.array(["s"] * n), np.arange(n).astype(str))
    scored = []
    for threads in (2, 1):
        with threadpool_limits(limits=threads):
            sums, decisions = fit_scorer("reference", emb, 0).score(emb)
        scored.append((decisions, [s.s for s in sums]))
    np.testing.assert_array_equal(scored[0][0], scored[1][0])
    assert scored[0][1] == scored[1][1]


def test_extended_loo_is_seeded_and_aligns_columns():
    emb = cohort(1)
    a, b, c = extended_loo(emb, REFERENCE, "reference", seed=3), extended_loo(emb, REFERENCE, "reference", seed=3), \
        extended_loo(emb, REFERENCE, "reference", seed=4)
    assert a["patients"] == b["patients"]
    assert a["c"] == [0, 0.25, 0.5, 0.75, 1.0] and len(a["confusion"]) == 5
    assert [p["patient_sum"] for p in a["patients"]] != [p["patient_sum"] for p in c["patients"]]
    # c = 0: no band, every patient gets a class; the table counts every patient once.
    zero = a["confusion"]["0"]
    assert all(row["uncertain"] == 0 for row in zero.values())
    assert sum(sum(r.values()) for r in zero.values()) == 20
    # A band only abstains: in every column a patient's call is the column-0 majority vote or uncertain; and
    # every band of a fold lies inside its widest one (c = 1), so whoever is uncertain in some column is
    # uncertain at c = 1.
    for p in a["patients"]:
        assert set(p["predictions"][1:]) <= {p["predictions"][0], UNCERTAIN}, p
        if UNCERTAIN in p["predictions"]:
            assert p["predictions"][-1] == UNCERTAIN, p
    # Column alignment: a held-out other-origin patient's fold has only o - 1 = 3 others, so its
    # column c = 1 uses that fold's widest band, the same band as its column c = 3/4.
    others = [p for p in a["patients"] if p["truth"] == "other"]
    assert len(others) == 4 and all(p["predictions"][4] == p["predictions"][3] for p in others)
    uncertain = [sum(row["uncertain"] for row in a["confusion"][f"{k / 4:g}"].values()) for k in range(5)]
    assert uncertain == [sum(p["predictions"][k] == UNCERTAIN for p in a["patients"]) for k in range(5)]
    assert uncertain[0] == 0 and uncertain[-1] == max(uncertain) > 0
    for _truth, lines in a["curves"].items():
        for k in range(5):
            assert sum(v[k] for v in lines.values()) == pytest.approx(1.0)


def test_external_applies_unchanged_thresholds(monkeypatch):
    train, test = cohort(2), cohort(5)
    fitted, calibrated = [], []

    def recording_fit(emb, seed):
        fitted.append((emb.embeddings, REFERENCE(emb, seed)))
        return fitted[-1][1]

    def recording_calibrate(pi, others):
        calibrated.append((sorted(pi), sorted(others)))
        return calibrate_bands(pi, others)

    monkeypatch.setattr(protocols, "calibrate_bands", recording_calibrate)
    result = external_test(train, test, recording_fit, "reference", seed=0)
    assert result["protocol"] == "external" and len(result["patients"]) == 20
    # One head, fitted once on training patients only (never on a test patient, never on an other-origin one).
    assert len(fitted) == 1
    x, head = fitted[0]
    owner = {row.tobytes(): p for row, p in zip(train.embeddings, train.patients)}
    fit_patients = {owner[row.tobytes()] for row in x}
    table = train.patient_table()
    assert fit_patients and all(lab < 2 for p, lab in table if p in fit_patients)
    # The bands: from the training patients the head did not see, with that head's sums.
    calibration = [(p, lab) for p, lab in table if p not in fit_patients]
    assert {lab for _, lab in calibration} == {0, 1, 2}

    def verdict(emb, patient, band=None):
        rows = emb.embeddings[emb.patients == patient].astype(np.float64)
        return patient_verdict(head.pipeline.decision_function(rows), band)

    sums = {p: verdict(train, p).patient_sum for p, _ in calibration}
    pi, others = [sums[p] for p, lab in calibration if lab < 2], [sums[p] for p, lab in calibration if lab == 2]
    # Calibrated once, on exactly those sums (none of a fit patient, none of a test patient).
    assert len(calibrated) == 1
    assert calibrated[0][0] == pytest.approx(sorted(pi), abs=1e-9)
    assert calibrated[0][1] == pytest.approx(sorted(others), abs=1e-9)
    bands = calibrate_bands(pi, others)
    assert result["c"] == [b.c for b in bands.bands]
    # Every test patient gets exactly the calls those training bands give it, column by column.
    for (patient, _), outcome in zip(test.patient_table(), result["patients"]):
        expected = [verdict(test, patient).verdict] + [verdict(test, patient, (b.lower, b.upper)).verdict
                                                       for b in bands.bands[1:]]
        assert outcome["patient"] == patient and outcome["predictions"] == expected
        assert outcome["patient_sum"] == pytest.approx(verdict(test, patient).patient_sum, abs=1e-9)
    assert any(UNCERTAIN in o["predictions"] for o in result["patients"])  # the bands did something
    # Unchanged: the thresholds do not adapt to the test cohort; half of it gets the very same calls.
    half = test.patient_table()[::2]
    subset = np.isin(test.patients, [p for p, _ in half])
    small = Embeddings(test.embeddings[subset], test.patients[subset], test.labels[subset], test.specimens[subset],
                       test.slides[subset], test.patch_ids[subset])
    monkeypatch.undo()
    again = external_test(train, small, REFERENCE, "reference", seed=0)
    by_patient = {o["patient"]: o["predictions"] for o in result["patients"]}
    assert {o["patient"]: o["predictions"] for o in again["patients"]} == {p: by_patient[p] for p, _ in half}


def test_clopper_pearson_and_class_metrics():
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.3084971, abs=1e-6)
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    conf = {"pancreas": {"pancreas": 8, "small_intestine": 1, "uncertain": 1},
            "small_intestine": {"pancreas": 0, "small_intestine": 9, "uncertain": 1},
            "other": {"pancreas": 1, "small_intestine": 0, "uncertain": 3}}
    m = class_metrics(conf)
    assert m["pancreas"]["sensitivity"]["value"] == 0.8
    assert m["pancreas"]["specificity"]["value"] == 13 / 14  # SI and other patients not called pancreas
    assert m["pancreas"]["ppv"]["value"] == 8 / 9


def test_evaluate_and_calibrate_commands(monkeypatch, capsys, tmp_path, tiny_model):
    emb = cohort(3)
    emb.save(tmp_path / "emb.npz")
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "emb.npz", "--out", tmp_path / "ev")
    assert code == 0, err
    assert "c = 0.75" in out and "sensitivity" in out
    result = json.loads((tmp_path / "ev" / "extended-loo.json").read_text())
    assert set(result["metrics"]) == {"0", "0.75", "1"}
    assert (tmp_path / "ev" / "extended-loo-curves.png").stat().st_size > 10_000
    # calibrate: sums table -> bands written into a copy of the model, which stays valid and re-hashed.
    sums = tmp_path / "sums.csv"
    sums.write_text("patient,label,sum\n" + "\n".join(f"p{i},{lab},{s}" for i, (lab, s) in enumerate(
        [("pancreas", -40.0), ("small_intestine", 35.0), ("other", -5.0), ("other", 2.0), ("pancreas", -1.0)])))
    target = tmp_path / "calibrated.onnx"
    code, out, err = run_cli(monkeypatch, capsys, "calibrate", "--sums", sums, "--model", tiny_model, "-o", target)
    assert code == 0, err
    code, out, _ = run_cli(monkeypatch, capsys, "inspect", target, "--json")
    meta = json.loads(out)
    assert [b["c"] for b in meta["netorigin.bands"]] == [0, 0.5, 1.0]
    assert meta["netorigin.bands"][2]["pi_inside"] == 1
    assert meta["netorigin.sha256"] == json.loads(run_cli(monkeypatch, capsys, "inspect", tiny_model,
                                                          "--json")[1])["netorigin.sha256"]
