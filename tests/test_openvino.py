"""`--engine openvino`: the same ONNX file on OpenVINO's CPU plugin; f32 matches ONNX Runtime, the report names
the engine and precision that ran, and misuse is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import openvino
import pytest

from netorigin.runtime.contract import load_contract
from netorigin.runtime.errors import DeviceError, MissingDependencyError
from netorigin.runtime.openvino_session import open_openvino
from netorigin.runtime.session import open_engine, open_session

from .helpers import run_cli


def patches(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def test_openvino_f32_matches_onnx_runtime(tiny_model):
    contract = load_contract(tiny_model)
    x = patches()
    reference, ref_embeddings = open_session(contract, "cpu").run(x, with_embeddings=True)
    session = open_openvino(contract, "f32")
    decisions, embeddings = session.run(x, with_embeddings=True)
    assert decisions.dtype == np.float64 and decisions.shape == reference.shape
    np.testing.assert_allclose(decisions, reference, atol=1e-5)
    np.testing.assert_allclose(embeddings, ref_embeddings, rtol=1e-4, atol=1e-5)
    assert session.provider.endswith("CPU f32") and session.batch_size == 32


def test_auto_precision_follows_what_openvino_says_the_cpu_has(tiny_model):
    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    session = open_openvino(load_contract(tiny_model), "auto")
    assert session.precision == ("bf16" if has_bf16 else "f32")


def test_predict_with_openvino_names_engine_and_precision(monkeypatch, capsys, tiny_model, slides):
    s = slides["svs20x"]
    base = ("predict", s.slide, "-a", s.annotations, "-m", tiny_model, "--device", "cpu", "--json")
    code, out, err = run_cli(monkeypatch, capsys, *base)
    assert code == 0, err
    onnx_report = json.loads(out)
    code, out, err = run_cli(monkeypatch, capsys, *base, "--engine", "openvino", "--ov-precision", "f32")
    assert code == 0, err
    report = json.loads(out)
    assert report["provider"].startswith("OpenVINO ") and report["provider"].endswith(" CPU f32")
    assert report["verdict"] == onnx_report["verdict"]
    assert report["patient_sum"] == pytest.approx(onnx_report["patient_sum"], abs=1e-4)


def test_openvino_on_cuda_or_missing_is_a_one_line_error(monkeypatch, tiny_model):
    contract = load_contract(tiny_model)
    with pytest.raises(DeviceError, match="--engine openvino runs on the CPU"):
        open_engine(contract, "openvino", "cuda")
    import netorigin.runtime.openvino_session as module

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(module.importlib, "import_module", missing)
    with pytest.raises(MissingDependencyError, match=r"pip install 'netorigin\[openvino\]'"):
        open_openvino(contract)
