"""`netorigin doctor`: what this install can do, as a screen and as JSON, and whether a model can run here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnxruntime
import openslide
import pytest

from netorigin.runtime.model.contract import load_contract

from .helpers import run_cli


def test_doctor_json_lists_what_this_machine_has(monkeypatch, capsys, tiny_model):
    code, out, err = run_cli(monkeypatch, capsys, "doctor", "--json", "-m", tiny_model)
    assert code == 0, err
    report = json.loads(out)
    assert report["onnxruntime"]["distributions"]["onnxruntime"] == onnxruntime.__version__
    assert report["onnxruntime"]["providers"]["CPUExecutionProvider"] == "starts"  # run for real, not listed
    assert report["openslide"] == {"installed": True, "library": openslide.__library_version__,
                                   "python": openslide.__version__, "reads_dicom": True}
    assert report["cpu"]["cores"] == os.cpu_count()
    assert report["extras"]["dicom"] is True and report["extras"]["gpu"] is False
    contract = load_contract(tiny_model)
    assert (report["model"]["graph_sha256"], report["model"]["verdict_sha256"]) == (contract.sha256,
                                                                                  contract.verdict_sha256)
    assert report["model"]["auto"]["engine"] == "onnxruntime" and report["problems"] == []


def test_doctor_screen_names_the_model_and_what_auto_runs(monkeypatch, capsys, tiny_model):
    code, out, _ = run_cli(monkeypatch, capsys, "doctor", "-m", tiny_model)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("netorigin    ") and any(line.startswith("providers    ") for line in lines)
    assert f"model        {tiny_model}" in out and "  auto       onnxruntime on CPUExecutionProvider: " in out


@pytest.mark.parametrize("as_json", [False, True])
def test_a_truncated_model_is_refused_in_one_line(monkeypatch, capsys, tiny_model, tmp_path, as_json):
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(tiny_model.read_bytes()[:5000])
    code, out, err = run_cli(monkeypatch, capsys, "doctor", "-m", truncated, *(["--json"] if as_json else []))
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {truncated}: ")


def test_a_variant_that_predict_would_refuse_fails_the_doctor(monkeypatch, capsys, tmp_path):
    """An INT8 variant with no fidelity check measured here: predict refuses it, so the doctor must say so."""
    from netorigin.export.smoke import build_smoke_model, tiny_embedder

    embedder, info = tiny_embedder()
    variant = build_smoke_model(tmp_path / "int8.onnx", embedder, info, patches_per_case=20, with_bands=False,
                                precision="int8")
    code, out, _ = run_cli(monkeypatch, capsys, "doctor", "--json", "-m", variant)
    report = json.loads(out)
    assert code == 1 and report["model"]["auto"]["provider"] == "CPUExecutionProvider"
    assert any(p.startswith("predict refuses it here: ") and "fidelity check" in p for p in report["problems"])


def test_a_missing_extra_is_reported_missing(tmp_path):
    """In a child process whose highdicom import is blocked, as on an install without the `dicom` extra."""
    script = ("import sys; sys.modules['highdicom'] = None; sys.argv = ['netorigin', 'doctor', '--json']; "
              "from netorigin.runtime.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    extras = json.loads(done.stdout)["extras"]
    assert extras["dicom"] is False and extras["cpu"] is True
