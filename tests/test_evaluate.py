"""The paper's protocols on synthetic embeddings, and the `calibrate` / `evaluate` commands."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.metrics import class_metrics, clopper_pearson
from netorigin.calibration.protocols import binary_loo, extended_loo, external_test
from netorigin.export.heads import fit_head

from .helpers import run_cli

REFERENCE = partial(fit_head, "reference")


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
    # Wider bands never call fewer patients uncertain overall.
    uncertain = [sum(row["uncertain"] for row in a["confusion"][f"{k / 4:g}"].values()) for k in range(5)]
    assert uncertain[-1] >= uncertain[0]
    for _truth, lines in a["curves"].items():
        for k in range(5):
            assert sum(v[k] for v in lines.values()) == pytest.approx(1.0)


def test_external_applies_unchanged_thresholds():
    result = external_test(cohort(2), cohort(5), REFERENCE, "reference", seed=0)
    assert result["protocol"] == "external" and len(result["patients"]) == 20


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
