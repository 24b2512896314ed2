"""Batch resume: a finished report is kept only if this run would make it (model identity, confidence, seed,
slide files); a rerun with another model never mixes two models' verdicts in one folder."""

from __future__ import annotations

import csv
import json

import pytest

from netorigin.calibration.bands import calibrate_bands
from netorigin.runtime.contract import load_contract

from .helpers import rebanded, run_cli


@pytest.fixture()
def setup(tmp_path, slides):
    a = slides["svs20x"]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "slide", "annotations"])
        writer.writerow(["c1", a.slide, a.annotations])
    return manifest, tmp_path / "out"


def batch(monkeypatch, capsys, manifest, out, model, *extra):
    return run_cli(monkeypatch, capsys, "batch", manifest, "-m", model, "--device", "cpu", "-o", out, *extra)


def test_band_edit_changes_verdict_identity_and_is_reported(tmp_path, tiny_model, monkeypatch, capsys, setup):
    manifest, out = setup
    edited = tmp_path / "edited.onnx"
    rebanded(tiny_model, calibrate_bands([-40.0, 40.0, 1.0], [-3.0, 2.0, 5.0]), edited)
    original, changed = load_contract(tiny_model), load_contract(edited)
    assert changed.sha256 == original.sha256  # same graph and weights ...
    assert changed.verdict_sha256 != original.verdict_sha256  # ... but another verdict identity
    code, _, err = batch(monkeypatch, capsys, manifest, out, edited)
    assert code == 0, err
    report = json.loads((out / "c1.json").read_text())
    assert report["model"]["verdict_sha256"] == changed.verdict_sha256


def test_rerun_with_same_model_skips_and_another_model_is_refused(tmp_path, tiny_model, monkeypatch, capsys, setup):
    manifest, out = setup
    code, _, err = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 0, err
    first = (out / "c1.json").read_bytes()
    code, stdout, _ = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 0 and "1 skipped" in stdout
    assert (out / "c1.json").read_bytes() == first

    edited = tmp_path / "edited.onnx"
    rebanded(tiny_model, calibrate_bands([-40.0, 40.0, 1.0], [-3.0, 2.0, 5.0]), edited)
    code, stdout, err = batch(monkeypatch, capsys, manifest, out, edited)
    assert code == 1
    assert err.strip().splitlines() == [f"error: {out}: 1 finished report(s) here were made by another run: c1 "
                                        "(another model (bands or rules)); rerun with --redo to replace them, or "
                                        "choose another output folder"]
    assert (out / "c1.json").read_bytes() == first  # nothing mixed, nothing overwritten

    code, stdout, err = batch(monkeypatch, capsys, manifest, out, tiny_model, "--seed", "7")
    assert code == 1 and "c1 (seed 0)" in err

    code, stdout, err = batch(monkeypatch, capsys, manifest, out, edited, "--redo")
    assert code == 0, err
    assert "1 ok" in stdout
    redone = json.loads((out / "c1.json").read_text())
    assert redone["model"]["verdict_sha256"] == load_contract(edited).verdict_sha256


def test_changed_slide_file_is_not_skipped(tmp_path, tiny_model, monkeypatch, capsys, setup, slides):
    manifest, out = setup
    code, _, err = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 0, err
    report = json.loads((out / "c1.json").read_text())
    report["slides"][0]["fingerprint"]["quickhash"] = "0" * 64  # as if the slide had been rescanned
    (out / "c1.json").write_text(json.dumps(report))
    code, _, err = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 1 and "c1 (other slide files)" in err
