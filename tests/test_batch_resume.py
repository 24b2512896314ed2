"""Batch resume: a finished report is kept only if this run would make it (model identity, confidence, seed,
slide files); a rerun with another model never mixes two models' verdicts in one folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from netorigin.calibration.bands import calibrate_bands
from netorigin.runtime.model.contract import load_contract

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
    was, now = load_contract(tiny_model).verdict_sha256[:16], load_contract(edited).verdict_sha256[:16]
    assert err.strip().splitlines() == [f"error: {out}: 1 finished report(s) here were made by another run: c1 "
                                        f"(another model (bands, rules or record): the report's verdict_sha256 is "
                                        f"{was}…, this model's {now}…); rerun with --redo to replace them, "
                                        "or choose another output folder"]
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
    report["inputs"][0]["quickhash"] = "0" * 64  # as if the slide had been rescanned
    (out / "c1.json").write_text(json.dumps(report))
    code, _, err = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 1 and "c1 (other slide or annotation files)" in err


def _manifest(path, *rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "slide", "annotations"])
        writer.writerows(rows)
    return path


def test_adding_or_changing_annotations_reruns_the_case(tmp_path, tiny_model, monkeypatch, capsys, slides):
    """A case first run on tissue detection is not kept when the pathologist's annotations are added, nor when the
    annotation file changes: the report records each annotation file's digest (or its absence)."""
    a = slides["svs20x"]
    out = tmp_path / "out"
    code, _, err = batch(monkeypatch, capsys, _manifest(tmp_path / "none.csv", ["c1", a.slide, ""]), out, tiny_model)
    assert code == 0, err
    assert json.loads((out / "c1.json").read_text())["inputs"][0]["annotations"] is None
    annotated = _manifest(tmp_path / "annotated.csv", ["c1", a.slide, a.annotations])
    code, _, err = batch(monkeypatch, capsys, annotated, out, tiny_model)
    assert code == 1 and "c1 (other slide or annotation files)" in err
    code, stdout, err = batch(monkeypatch, capsys, annotated, out, tiny_model, "--redo")
    assert code == 0 and "1 ok" in stdout, err
    recorded = json.loads((out / "c1.json").read_text())["inputs"][0]["annotations"]
    assert recorded["name"] == Path(a.annotations).name and len(recorded["sha256"]) == 64
    edited = tmp_path / "edited.geojson"
    doc = json.loads(Path(a.annotations).read_text())
    edited.write_text(json.dumps(doc, indent=1))  # the same regions, another file
    code, _, err = batch(monkeypatch, capsys, _manifest(tmp_path / "edited.csv", ["c1", a.slide, edited]), out,
                         tiny_model)
    assert code == 1 and "c1 (other slide or annotation files)" in err


def test_a_rescanned_slide_reruns_an_insufficient_tissue_case(tmp_path, tiny_model, monkeypatch, capsys, slides):
    a = slides["svs20x"]
    glass = tmp_path / "glass.geojson"
    glass.write_text(json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
                                  "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [60, 5], [60, 60],
                                                                                   [5, 60], [5, 5]]]}}]))
    manifest, out = _manifest(tmp_path / "m.csv", ["c1", a.slide, glass]), tmp_path / "out"
    code, _, _ = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 1 and json.loads((out / "c1.json").read_text())["status"] == "insufficient_tissue"
    code, stdout, _ = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert "1 skipped" in stdout  # the same inputs: kept
    report = json.loads((out / "c1.json").read_text())
    report["inputs"][0]["quickhash"] = "0" * 64  # as if the slide had been rescanned
    (out / "c1.json").write_text(json.dumps(report))
    code, _, err = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 1 and "c1 (other slide or annotation files)" in err


def test_a_second_batch_into_a_running_batchs_folder_is_refused(tmp_path, tiny_model, monkeypatch, capsys, setup):
    """The output folder is locked while a batch runs (here: another process holds the lock)."""
    manifest, out = setup
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(out / ".netorigin-batch.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = batch(monkeypatch, capsys, manifest, out, tiny_model)
        assert code == 1 and err.strip().splitlines() == [
            f"error: {out}: another netorigin batch is writing to this folder: wait for it to finish, or choose "
            "another output folder"]
        assert not (out / "c1.json").exists() and not (out / "batch-summary.json").exists()
    finally:
        holder.kill()
        holder.wait()
    code, _, err = batch(monkeypatch, capsys, manifest, out, tiny_model)
    assert code == 0, err
