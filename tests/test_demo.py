"""A small demo end to end: synthetic cohort -> embed -> fit -> calibrate -> export -> lean runtime."""

from __future__ import annotations

import json

import pytest

from netorigin.runtime.model.contract import load_contract

from .helpers import run_cli


@pytest.mark.slow
def test_small_demo_end_to_end(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "demo", "--small", "--out", tmp_path)
    assert code == 0, err
    assert out.count("DEMO MODEL, NOT FOR DIAGNOSIS") >= 2
    summary = json.loads((tmp_path / "demo-summary.json").read_text())
    assert summary["warning"] == "DEMO MODEL, NOT FOR DIAGNOSIS"
    assert len(summary["test_cases"]) == 4
    contract = load_contract(summary["model"])  # valid, hash verified
    assert contract.is_demo and contract.patches_per_case == 16 and contract.bands
    for row in summary["test_cases"]:
        report = json.loads((tmp_path / "reports" / f"{row['case']}.json").read_text())
        assert report["warning"] == "DEMO MODEL, NOT FOR DIAGNOSIS"
        assert report["verdict"] == row["verdict"] and report["patient_sum"] == row["patient_sum"]
        assert report["model"]["graph_sha256"] == contract.sha256
        assert report["model"]["verdict_sha256"] == contract.verdict_sha256
    assert (tmp_path / "demo-sums.png").stat().st_size > 5_000
    # The synthetic origins are learnable: no labelled test case is called the wrong origin.
    assert summary["labelled_misclassified"] == 0
