"""`netorigin compare-raters`: seed 002's Tables 1-4 from result CSVs and the readers' calls."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from netorigin.calibration.rater_tables import read_model_results
from netorigin.runtime.mri.protocol import SEVEN_WAY

from .helpers import run_cli


def write_results(path, patients, labels, scores, classes):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient", "label", *classes])
        for patient, label, row in zip(patients, labels, scores, strict=True):
            writer.writerow([patient, label, *row])
    return path


@pytest.fixture()
def cohort(tmp_path):
    """Twenty-one patients, three per class; model A nearly right, model B noisier, readers miss every metastasis."""
    rng = np.random.default_rng(0)
    labels = [cls for cls in SEVEN_WAY for _ in range(3)]
    patients = [f"p{i:02d}" for i in range(len(labels))]
    truth = np.array([SEVEN_WAY.index(label) for label in labels])
    good = rng.random((21, 7)) + 3 * np.eye(7)[truth]
    noisy = rng.random((21, 7)) + 0.6 * np.eye(7)[truth]
    a = write_results(tmp_path / "A.csv", patients, labels, good, SEVEN_WAY)
    b = write_results(tmp_path / "B.csv", patients, labels, noisy, SEVEN_WAY)
    readers = tmp_path / "readers.csv"
    readers.write_text("patient,call\n" + "".join(
        f"{p},{'hcc' if label == 'metastasis' else label}\n" for p, label in zip(patients, labels, strict=True)))
    return a, b, readers, labels


def test_tables_give_auc_rates_mcnemar_delong_and_kappa(cohort, tmp_path, monkeypatch, capsys):
    a, b, readers, labels = cohort
    code, out, err = run_cli(monkeypatch, capsys, "compare-raters", a, b, "--readers", readers, "-o", tmp_path / "t")
    assert code == 0, err
    tables = json.loads((tmp_path / "t" / "tables.json").read_text())
    model_a = tables["models"][0]
    assert model_a["name"] == "A" and [r["class"] for r in model_a["rows"]] == list(SEVEN_WAY)
    for row in model_a["rows"]:  # model A's true class always scores highest: AUC 1, every call right
        assert row["auc"] == 1.0 and row["sensitivity"]["value"] == 1.0 and row["specificity"]["value"] == 1.0
        low, high = row["sensitivity"]["ci95"]
        assert 0 < low < 1 and high == 1.0  # Clopper-Pearson for 3 of 3
    metastasis = next(r for r in model_a["rows"] if r["class"] == "metastasis")
    assert metastasis["readers"]["sensitivity"]["value"] == 0.0  # the readers called every metastasis HCC
    assert metastasis["readers"]["mcnemar_p_sensitivity"] == pytest.approx(0.25)  # 3 discordant pairs, exact
    hcc = next(r for r in model_a["rows"] if r["class"] == "hcc")
    assert hcc["readers"]["specificity"]["successes"] == 15  # 3 metastases wrongly called HCC
    assert tables["differences"][0]["models"] == ["A", "B"] and set(tables["differences"][0]["delong_p"]) == \
        set(SEVEN_WAY)
    kappas = {row["rater"]: row for row in tables["agreement"]}
    assert kappas["A"]["kappa"] == pytest.approx(1.0) and kappas["A"]["agreement"] == 1.0
    assert kappas["readers (readers)"]["agreement"] == pytest.approx(18 / 21)
    assert "| metastasis | 3 | 1.000" in out and "DeLong p, A vs B" in out
    assert (tmp_path / "t" / "tables.md").read_text() in out


def test_seven_way_reader_calls_count_as_benign_or_malignant_for_a_binary_model(cohort, tmp_path, monkeypatch,
                                                                               capsys):
    _, _, readers, labels = cohort
    groups = ["malignant" if label in ("hcc", "metastasis", "other_primary") else "benign" for label in labels]
    scores = [[0.2, 0.8] if g == "malignant" else [0.9, 0.1] for g in groups]
    c = write_results(tmp_path / "C.csv", [f"p{i:02d}" for i in range(21)], groups, scores, ["benign", "malignant"])
    code, _, err = run_cli(monkeypatch, capsys, "compare-raters", c, "--readers", readers, "-o", tmp_path / "t")
    assert code == 0, err
    rows = json.loads((tmp_path / "t" / "tables.json").read_text())["models"][0]["rows"]
    malignant = next(r for r in rows if r["class"] == "malignant")
    assert malignant["readers"]["sensitivity"]["value"] == 1.0  # metastasis called HCC is still malignant


def test_bad_tables_fail_in_one_line_naming_the_file(cohort, tmp_path, monkeypatch, capsys):
    a, _, _, _ = cohort
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,label,cyst,hcc\np1,fnh,0.1,0.9\np2,cyst,0.8,0.2\n")
    code, _, err = run_cli(monkeypatch, capsys, "compare-raters", bad, "-o", tmp_path / "t")
    assert code != 0 and "bad.csv" in err and "label(s) fnh have no score column" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "t").exists()
    stray = tmp_path / "stray.csv"
    stray.write_text("patient,call\nq1,cyst\n")
    code, _, err = run_cli(monkeypatch, capsys, "compare-raters", a, "--readers", stray, "-o", tmp_path / "t")
    assert code != 0 and "stray.csv" in err and "cover no model" in err


def test_the_call_is_the_class_with_the_largest_score(tmp_path):
    path = write_results(tmp_path / "E.csv", ["x", "y"], ["hcc", "metastasis"], [[0.5, 0.4, 0.1], [0.2, 0.3, 0.5]],
                         ["hcc", "metastasis", "other_primary"])
    assert read_model_results(path).calls == ("hcc", "other_primary")
