"""`netorigin finetune` (seed 003): a patient-level split, a checkpoint that embed / train / export accept, and a
model built from it whose embedder is exactly the fine-tuned network."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from netorigin.calibration.splits import patient_digests
from netorigin.export.cli_finetune import command as finetune_command
from netorigin.export.embedder import build_embedder
from netorigin.export.synthetic import make_cohort
from netorigin.runtime.model.contract import load_contract

from .helpers import run_cli


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune-cohort")
    return make_cohort(root, {"pancreas": 3, "small_intestine": 3, "other": 2}, seed=6, mpps=(0.5,),
                       size_um=(1400, 1200), multi_slide_every=0)


@pytest.fixture(scope="module")
def finetuned(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetuned") / "ft.pt"
    args = [cohort, "--weights-kind", "random", "--patches-per-case", "4", "--head-epochs", "1", "--epochs", "1",
            "--batch-size", "8", "--train-fraction", "0.67", "-o", out]
    result = CliRunner().invoke(finetune_command, list(map(str, args)))  # module scope: no capsys here
    assert result.exit_code == 0, result.output
    assert "validation patch accuracy" in result.output
    return out


def test_checkpoint_changes_only_what_step_two_unfroze(finetuned):
    base, _ = build_embedder("random", seed=0)
    tuned, info = build_embedder("state-dict", finetuned)
    base_state, tuned_state = base.trunk.state_dict(), tuned.trunk.state_dict()
    assert torch.equal(base_state["conv1.weight"], tuned_state["conv1.weight"])  # frozen throughout
    assert torch.equal(base_state["layer3.0.conv1.weight"], tuned_state["layer3.0.conv1.weight"])
    assert not torch.equal(base_state["layer4.0.conv1.weight"], tuned_state["layer4.0.conv1.weight"])
    assert torch.equal(base_state["layer4.0.bn1.running_mean"], tuned_state["layer4.0.bn1.running_mean"])
    assert info.weights_sha256 == hashlib.sha256(finetuned.read_bytes()).hexdigest()


def test_record_keeps_patients_on_one_side(finetuned):
    record = json.loads(finetuned.with_suffix(".json").read_text())
    split = record["split"]
    assert split["fit"] and not set(split["fit"]) & set(split["calibration"])
    assert not any(p.startswith("oth") for p in split["fit"])
    assert record["checkpoint_sha256"] == hashlib.sha256(finetuned.read_bytes()).hexdigest()
    assert record["train_patches"] == 4 * len(split["fit"])
    assert [e["step"] for e in record["epochs"]] == [1, 2]


def test_finetuned_checkpoint_round_trips_into_an_exported_model(finetuned, cohort, monkeypatch, capsys, tmp_path):
    """finetune then train on the same cohort: calibration patients whose patches trained the embedder are refused,
    named (another split seed mixes them in); the split finetune used (same fraction and seed) is accepted, and the
    model records which patients trained its embedder."""
    args = ("train", cohort, "--weights-kind", "state-dict", "--weights", finetuned, "--patches-per-case", "4",
            "--fit-fraction", "0.67", "--name", "ft", "-o", tmp_path)
    trained_on = set(json.loads(finetuned.with_suffix(".json").read_text())["split"]["fit"])
    code, out, err = run_cli(monkeypatch, capsys, *args, "--seed", "3")
    assert code == 1 and "trained the embedder (finetune)" in err and len(err.strip().splitlines()) == 1
    assert any(p in err for p in trained_on) and not (tmp_path / "ft.onnx").exists()
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    contract = load_contract(tmp_path / "ft.onnx")
    assert not contract.record.calibration.in_sample
    assert set(contract.record.embedder.trained_on_patients_sha256) == set(patient_digests(trained_on))
    embedder = contract.provenance["embedder"]
    assert embedder["weights_sha256"] == hashlib.sha256(finetuned.read_bytes()).hexdigest()
    assert embedder["name"] == "resnet50-state-dict"
    session = ort.InferenceSession(contract.model_bytes, providers=["CPUExecutionProvider"])
    patches = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    (onnx_embedding,) = session.run(["embedding"], {"patches": patches})
    tuned, _ = build_embedder("state-dict", finetuned)
    with torch.inference_mode():
        reference = tuned(torch.from_numpy(patches)).numpy()
    assert np.abs(onnx_embedding - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())
    base, _ = build_embedder("random", seed=0)
    with torch.inference_mode():
        assert np.abs(base(torch.from_numpy(patches)).numpy() - reference).max() > 1e-3  # really the tuned net
