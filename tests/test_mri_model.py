"""Seed 002's models end to end on a synthetic cohort: `train-mri` cross-validates and exports one ONNX model per
kind, the runtime predicts an MRI case with it, and ONNX Runtime gives PyTorch's probabilities."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from netorigin.export.mri_model import probabilities
from netorigin.export.synthetic_mri import make_mri_cohort
from netorigin.runtime.errors import ModelError
from netorigin.runtime.model.contract import load_contract
from netorigin.runtime.mri.clinical import DEFAULT_ENCODING, encode_record, read_clinical
from netorigin.runtime.mri.contract import load_mri_contract
from netorigin.runtime.mri.predictor import MriCase, MriPredictor
from netorigin.runtime.mri.protocol import MODEL_KINDS, UNENHANCED

from .helpers import run_cli, run_cli_outside_a_test
from .mri_cases import untrained_model

TINY = ["--architecture", "test_efficientnet", "--epochs", "1", "--folds", "2", "--learning-rate", "0.01"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri-cohort")
    make_mri_cohort(root, {"cyst": 2, "fnh": 1, "hcc": 2, "metastasis": 2, "other_primary": 2}, seed=7)
    return root


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("mri-models")
    code, stdout, stderr = run_cli_outside_a_test("train-mri", cohort / "cohort.csv", "--clinical",
                                                  cohort / "clinical.csv", "--kind", "G", "-o", out, *TINY, "--demo")
    assert code == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def untrained_f(tmp_path_factory):
    """Model F (six sequences + clinical data) as exported, untrained: the PyTorch network and its file."""
    model = tmp_path_factory.mktemp("mri-f") / "f.onnx"
    return untrained_model("F", model, seed=3, clinical=DEFAULT_ENCODING), model


def test_train_mri_cross_validates_and_exports_a_kind(trained):
    out, stdout = trained
    assert "Model G: 6 patients" in stdout  # the malignant ones only
    for kind in ("G",):
        summary = json.loads((out / f"model-{kind}.json").read_text())
        parity = summary["parity_onnx_vs_pytorch"]
        assert parity["max_abs_group_probability"] <= 1e-4 and parity["patient_class_flips"] == 0
        assert parity["groups"] == summary["groups"] > summary["patients"]
        with (out / f"model-{kind}-cv.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == summary["patients"]
        assert list(rows[0])[2:] == list(MODEL_KINDS[kind].classes)
        sums = np.array([[float(r[c]) for c in MODEL_KINDS[kind].classes] for r in rows])
        assert np.all(sums > 0)  # out-of-fold summed probabilities, one per group
    contract = load_mri_contract(out / "model-G.onnx")
    assert contract.kind == "G" and contract.sequences == UNENHANCED and contract.is_demo
    assert [f.name for f in contract.clinical] == [f.name for f in DEFAULT_ENCODING]


def test_cross_validation_results_feed_compare_raters(trained, tmp_path, monkeypatch, capsys):
    out, _ = trained
    code, stdout, err = run_cli(monkeypatch, capsys, "compare-raters", out / "model-G-cv.csv", "-o", tmp_path / "t")
    assert code == 0, err
    assert "| hcc | 2 |" in stdout and "model-G-cv" in stdout


def test_predict_takes_an_mri_case_and_reports_its_groups(trained, cohort, monkeypatch, capsys):
    out, _ = trained
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", cohort / "metastasis-01", "-m", out / "model-G.onnx",
                                "--clinical", cohort / "clinical.csv", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    sums = report["patient_sums"]
    assert report["lesion_class"] == max(sums, key=sums.get) and report["model_kind"] == "G"
    group_sum = {c: sum(g["probabilities"][c] for g in report["groups"]) for c in sums}
    assert group_sum == pytest.approx(sums, abs=1e-9)
    assert [s["sequence"] for s in report["inputs"]["series"]] == list(UNENHANCED)
    assert report["warning"] and report["model"]["graph_sha256"] == load_mri_contract(
        out / "model-G.onnx").identity["graph_sha256"]


def test_the_runtime_gives_pytorchs_probabilities_per_group_and_per_patient(cohort, untrained_f):
    kind = MODEL_KINDS["F"]
    net, model = untrained_f
    records = read_clinical(cohort / "clinical.csv")
    predictor = MriPredictor(model, device="cpu")
    for patient in ("hcc-00", "other_primary-01"):
        case = MriCase.from_folder(cohort / patient, clinical=records[patient])
        result = predictor.predict(case)
        reference = probabilities(net, predictor.groups(case).pixels,
                                  encode_record(records[patient], DEFAULT_ENCODING, patient))
        assert np.abs(result.probabilities - reference).max() <= 1e-4
        assert result.lesion_class == kind.classes[int(reference.sum(axis=0).argmax())]


def test_missing_clinical_record_or_sequence_is_one_line_and_no_result(trained, untrained_f, cohort, tmp_path,
                                                                       monkeypatch, capsys):
    out, _ = trained
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", cohort / "hcc-00", "-m", out / "model-G.onnx",
                                "-o", tmp_path / "r")
    assert code != 0 and "Model G needs the clinical record" in err and stdout == ""
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    case = tmp_path / "hcc-00"
    shutil.copytree(cohort / "hcc-00", case)
    shutil.rmtree(case / "t1_pre")
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", case, "-m", untrained_f[1], "--clinical",
                                cohort / "clinical.csv")
    assert code != 0 and "T1 pre-contrast series folder not found" in err and stdout == ""


def test_train_mri_lists_every_unusable_patient_and_trains_nothing(cohort, tmp_path, monkeypatch, capsys):
    root = tmp_path / "cohort"
    shutil.copytree(cohort, root)
    shutil.rmtree(root / "hcc-00" / "dwi_b800")
    clinical = (root / "clinical.csv").read_text().splitlines()
    (root / "clinical.csv").write_text("\n".join(line for line in clinical if not line.startswith("metastasis-00"))
                                       + "\n")
    code, _, err = run_cli(monkeypatch, capsys, "train-mri", root / "cohort.csv", "--clinical", root / "clinical.csv",
                           "--kind", "G", "-o", tmp_path / "out", *TINY)
    lines = err.strip().splitlines()
    assert code != 0 and not (tmp_path / "out").exists()
    assert any("hcc-00" in line and "diffusion b=800 series folder not found" in line for line in lines)
    assert any("metastasis-00: no row in the clinical table" in line for line in lines)
    assert lines[-1] == "2 patient(s) cannot be used: nothing was trained"


def test_model_families_refuse_each_other(untrained_f, tiny_model):
    with pytest.raises(ModelError, match="a mri model, not a slide model"):
        load_contract(untrained_f[1])
    with pytest.raises(ModelError, match="a slide model, not an MRI lesion model"):
        load_mri_contract(tiny_model)


def test_doctor_and_inspect_read_an_mri_model(untrained_f, monkeypatch, capsys):
    model = untrained_f[1]
    contract = load_mri_contract(model)
    code, out, err = run_cli(monkeypatch, capsys, "doctor", "--json", "-m", model)
    assert code == 0, err
    report = json.loads(out)["model"]
    assert (report["family"], report["kind"], report["graph_sha256"]) == ("mri", "F",
                                                                        contract.identity["graph_sha256"])
    assert report["clinical_fields"] == [f.name for f in DEFAULT_ENCODING]
    assert report["signature"]["state"] == "unsigned"
    code, out, _ = run_cli(monkeypatch, capsys, "doctor", "-m", model)
    assert code == 0 and "  mri        Model F: t2, " in out and "clinical fields" in out
    code, out, err = run_cli(monkeypatch, capsys, "inspect", model)
    assert code == 0, err
    assert "family      MRI lesion model, Model F" in out
    assert f"graph sha256 {contract.identity['graph_sha256']}" in out and out.startswith("*** DEMO MODEL")


def test_doctor_says_an_mri_model_cannot_run_without_simpleitk(untrained_f):
    """In a child process whose SimpleITK import is blocked, as on an install without the `mri` extra."""
    import subprocess
    import sys

    script = ("import sys; sys.modules['SimpleITK'] = None; sys.argv = ['netorigin', 'doctor', '-m', sys.argv[1]]; "
              "from netorigin.runtime.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", script, str(untrained_f[1])], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "CANNOT RUN   this MRI model's DICOM series need SimpleITK: pip install 'netorigin[mri]'" in done.stdout


def test_an_edited_class_list_breaks_the_verdict_digest(untrained_f, tmp_path):
    from netorigin.runtime.model.contract import PREFIX, encode_metadata
    from netorigin.runtime.model.protobuf_fields import read_metadata, replace_metadata

    data = untrained_f[1].read_bytes()
    props = read_metadata(data)
    props |= encode_metadata({PREFIX + "classes": ["metastasis", "hcc", "other_primary"]})
    (tmp_path / "edited.onnx").write_bytes(replace_metadata(data, props))
    with pytest.raises(ModelError, match="verdict digest mismatch"):
        load_mri_contract(tmp_path / "edited.onnx")


def test_mri_demo_runs_the_chain_and_prints_both_tables(tmp_path, monkeypatch, capsys):
    code, stdout, err = run_cli(monkeypatch, capsys, "demo", "--mri", "--small", "-o", tmp_path / "demo")
    assert code == 0, err
    assert "### Model A (7 patients)" in stdout and "### Model G (3 patients)" in stdout  # held out, 1 per class
    assert stdout.count("DEMO MODEL, NOT FOR DIAGNOSIS") >= 2
    summary = json.loads((tmp_path / "demo" / "mri-demo-summary.json").read_text())
    for kind in ("A", "G"):
        parity = summary["models"][kind]["training"]["parity_onnx_vs_pytorch"]
        assert parity["max_abs_group_probability"] <= 1e-4 and parity["patient_class_flips"] == 0
        assert summary["models"][kind]["patients_per_s"] > 0


def test_batch_runs_mri_cases_one_bad_case_fails_alone_and_reruns_skip(trained, untrained_f, cohort, tmp_path,
                                                                       monkeypatch, capsys):
    out, _ = trained
    root = tmp_path / "cohort"
    shutil.copytree(cohort, root)
    args = ["batch", root / "cohort.csv", "-m", out / "model-G.onnx", "--clinical", root / "clinical.csv", "-o",
            tmp_path / "b"]
    code, stdout, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    cases = json.loads((tmp_path / "b" / "batch-summary.json").read_text())["cases"]
    assert f"{cases} ok" in stdout and (tmp_path / "b" / "hcc-01.json").exists()
    with (tmp_path / "b" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["label"] for r in rows} == set(MODEL_KINDS["G"].classes) and len(rows) == 6  # benign left out
    means = np.array([[float(r[c]) for c in MODEL_KINDS["G"].classes] for r in rows])
    assert np.allclose(means.sum(axis=1), 1.0, atol=1e-6)  # mean group probabilities
    shutil.rmtree(root / "hcc-01" / "t2")
    code, stdout, err = run_cli(monkeypatch, capsys, *args)
    assert code == 1 and "hcc-01" in err and "T2-weighted series folder not found" in err
    assert f"0 ok, {cases - 1} skipped" in stdout and "1 failed" in stdout
    assert not (tmp_path / "b" / "hcc-01.json").exists()  # no stale result beside the failure
    code, _, err = run_cli(monkeypatch, capsys, "compare-raters", tmp_path / "b" / "results.csv", "-o",
                           tmp_path / "t")
    assert code == 0, err
    other = ["batch", root / "cohort.csv", "-m", untrained_f[1], "--clinical", root / "clinical.csv", "-o",
             tmp_path / "b"]
    code, _, err = run_cli(monkeypatch, capsys, *other)
    assert code != 0 and "made by another model: --redo replaces them" in err
    code, stdout, err = run_cli(monkeypatch, capsys, *other, "--redo")
    assert code == 1 and f"{cases - 1} ok" in stdout  # hcc-01 still lacks its T2


def test_train_mri_writes_no_model_that_onnx_runtime_would_change(cohort, tmp_path, monkeypatch, capsys):
    from netorigin.export import mri_train

    monkeypatch.setattr(mri_train, "check_parity", lambda *a: {"patient_class_flips": 1,
                                                               "max_abs_group_probability": 0.2})
    code, _, err = run_cli(monkeypatch, capsys, "train-mri", cohort / "cohort.csv", "--clinical",
                           cohort / "clinical.csv", "--kind", "G", "-o", tmp_path / "out", "--architecture",
                           "test_efficientnet", "--epochs", "1", "--folds", "0")
    assert code != 0 and "ONNX Runtime differs from PyTorch" in err
    assert not (tmp_path / "out" / "model-G.onnx").exists()


def test_an_mri_model_is_signed_and_a_trusted_key_is_enforced(trained, cohort, tmp_path, monkeypatch, capsys):
    out, _ = trained
    model = tmp_path / "g.onnx"
    shutil.copy(out / "model-G.onnx", model)
    code, _, err = run_cli(monkeypatch, capsys, "keygen", "--private", tmp_path / "k", "--public", tmp_path / "k.pub")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "keygen", "--private", tmp_path / "o", "--public", tmp_path / "o.pub")
    assert code == 0, err
    code, stdout, err = run_cli(monkeypatch, capsys, "sign", model, "--key", tmp_path / "k")
    assert code == 0 and "signed" in stdout, err
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", cohort / "hcc-00", "-m", model, "--trusted-key",
                                tmp_path / "k.pub", "--clinical", cohort / "clinical.csv", "--json")
    assert code == 0, err
    assert json.loads(stdout)["model"]["signature"]["state"] == "trusted"
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", cohort / "hcc-00", "-m", model, "--trusted-key",
                                tmp_path / "o.pub", "--clinical", cohort / "clinical.csv")
    assert code != 0 and "not a trusted key" in err and stdout == ""
