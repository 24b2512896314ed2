"""`--engine openvino`: the same ONNX file on OpenVINO's CPU plugin; f32 matches ONNX Runtime, the report names
the engine and precision that ran, and misuse is a one-line error."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import openvino
import pytest

from netorigin.runtime.engines.openvino_session import bf16_available, open_openvino, openvino_measured_on
from netorigin.runtime.engines.session import (
    BF16_CHECK,
    ONNXRUNTIME,
    OPENVINO,
    choose_engine,
    open_engine,
    open_session,
)
from netorigin.runtime.errors import DeviceError, MissingDependencyError
from netorigin.runtime.model.contract import ModelContract, load_contract
from netorigin.runtime.reports.report import case_report
from netorigin.runtime.slide.predictor import Predictor

from .helpers import fidelity_record, run_cli, with_record


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
    import netorigin.runtime.engines.openvino_session as module

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(module.importlib, "import_module", missing)
    with pytest.raises(MissingDependencyError, match=r"pip install 'netorigin\[openvino\]'"):
        open_openvino(contract)


def with_bf16_check(model_path, tmp_path, passed: bool, measured_on=None) -> ModelContract:
    """The model with an OpenVINO bf16 check in its record, as `train` records it (measured here by default)."""
    check = fidelity_record(passed, 0 if passed else 2, 0.004 if passed else 0.03,
                            measured_on or openvino_measured_on("bf16"))
    name = f"checked-{passed}-{measured_on is None}.onnx"
    return with_record(model_path, tmp_path / name, engine_checks={BF16_CHECK: check})


def test_auto_chooses_openvino_bf16_only_on_a_passed_check_and_a_bf16_cpu(monkeypatch, tiny_model, tmp_path):
    import netorigin.runtime.engines.openvino_session as module

    passed, failed = with_bf16_check(tiny_model, tmp_path, True), with_bf16_check(tiny_model, tmp_path, False)
    unchecked = load_contract(tiny_model)
    monkeypatch.setattr(module, "bf16_available", lambda: True)
    assert choose_engine(passed, "cpu")[0] == OPENVINO
    assert choose_engine(passed, "cuda") == (ONNXRUNTIME, "a GPU run")
    engine, why = choose_engine(failed, "cpu")
    assert engine == ONNXRUNTIME and "OpenVINO bf16 failed its fidelity check" in why and "2 verdict flips" in why
    assert choose_engine(unchecked, "cpu") == (ONNXRUNTIME, "OpenVINO bf16 has no recorded fidelity check")
    elsewhere = with_bf16_check(tiny_model, tmp_path, True, replace(openvino_measured_on("bf16"),
                                                                    hardware="x86_64 amx_bf16 avx512_bf16"))
    engine, why = choose_engine(elsewhere, "cpu")  # a check from another CPU type is no evidence here
    assert engine == ONNXRUNTIME and "measured elsewhere: hardware 'x86_64 amx_bf16 avx512_bf16'" in why
    older = with_bf16_check(tiny_model, tmp_path, True, replace(openvino_measured_on("bf16"), version="2023.0.0"))
    assert "measured elsewhere: version '2023.0.0'" in choose_engine(older, "cpu")[1]
    monkeypatch.setattr(module, "bf16_available", lambda: False)
    assert choose_engine(passed, "cpu")[0] == ONNXRUNTIME


def test_predictor_reports_what_auto_chose(tiny_model, slides, tmp_path):
    s = slides["svs20x"]
    predictor = Predictor(tiny_model, device="cpu")  # engine auto; this model records no bf16 check
    report = case_report(predictor.predict_case([s.slide], [s.annotations]))
    no_bf16 = "OpenVINO is not installed or this CPU has no bf16"
    assert report["engine"] == {"requested": "auto", "ran": ONNXRUNTIME,
                                "why": "OpenVINO bf16 has no recorded fidelity check" if bf16_available() else no_bf16}
    assert report["provider"] == "CPUExecutionProvider"
    checked = with_bf16_check(tiny_model, tmp_path, True)
    report = case_report(Predictor(checked, device="cpu").predict_case([s.slide], [s.annotations]))
    if bf16_available():
        assert report["engine"]["ran"] == OPENVINO and report["provider"].endswith("CPU bf16")
    else:  # a passed check never makes a CPU without bf16 run it
        assert report["engine"] == {"requested": "auto", "ran": ONNXRUNTIME, "why": no_bf16}


def test_train_records_the_bf16_check_with_fp32_bands():
    from netorigin.calibration.bands_io import PatientSum
    from netorigin.export.train import _fidelity_check
    from netorigin.runtime.model.bands import Band, BandTable

    fp32 = [PatientSum(f"p{i}", i % 3, s, 60 if s > 0 else 40, 100) for i, s in enumerate([-30.0, 25.0, 1.0, -2.0])]
    table = BandTable((Band(0.0, 0, 0.0, 0.0), Band(1.0, 1, -5.0, 5.0)), n_pi=2, n_other=2)
    close = [PatientSum(p.patient, p.label, p.s + 0.05, p.votes_small_intestine, 100) for p in fp32]
    here = openvino_measured_on("f32")
    check = _fidelity_check(close, fp32, table, here)
    assert check.verdict_flips == 0 and check.passed and check.max_abs_delta_s_over_band_width == \
        pytest.approx(0.05 / 10) and check.measured_on == here
    across = [PatientSum(p.patient, p.label, p.s + (5.0 if p.s == 1.0 else 0.0), p.votes_small_intestine, 100)
              for p in fp32]  # S = 1 moves out of the band: uncertain -> small intestine
    check = _fidelity_check(across, fp32, table, here)
    assert check.verdict_flips == 1 and not check.passed
    edge = [PatientSum("o", 2, -5.0 + 1e-7, 0, 100), PatientSum("p", 0, -30.0, 0, 100)]  # defines the band's edge
    moved = [PatientSum("o", 2, -5.0 - 1e-3, 0, 100), PatientSum("p", 0, -30.0, 0, 100)]
    check = _fidelity_check(moved, edge, table, here)
    assert check.verdict_flips == 0 and check.edge_patients_skipped == 1
    # A precision variant is judged under its own bands: S shifted by 6 with its band shifted by 6 keeps every
    # verdict (S = 1 -> 7 stays uncertain in (1, 11)), though under the fp32 band 7 would be small intestine.
    shifted = [PatientSum(p.patient, p.label, p.s + 6.0, p.votes_small_intestine, 100) for p in fp32]
    own = BandTable((Band(0.0, 0, 6.0, 6.0), Band(1.0, 1, 1.0, 11.0)), n_pi=2, n_other=2)
    assert _fidelity_check(shifted, fp32, table, here, own).verdict_flips == 0
    assert _fidelity_check(shifted, fp32, table, here).verdict_flips == 1


def test_auto_never_overrides_an_explicit_f32_request(monkeypatch, tiny_model, tmp_path):
    import netorigin.runtime.engines.openvino_session as module

    monkeypatch.setattr(module, "bf16_available", lambda: True)
    predictor = Predictor(with_bf16_check(tiny_model, tmp_path, True), device="cpu", ov_precision="f32")
    assert predictor.engine_choice["ran"] == ONNXRUNTIME and "--ov-precision f32" in predictor.engine_choice["why"]


def test_explicit_bf16_without_a_passing_check_here_is_refused_unless_allowed(monkeypatch, capsys, tiny_model, slides,
                                                                           tmp_path):
    """--engine openvino with bf16 on a model whose bf16 check failed: refused in one line; with
    --allow-lower-fidelity it runs and the report and page say LOWER FIDELITY. OpenVINO's `auto` precision then
    means f32 (nothing vouches for bf16)."""
    if not bf16_available():
        pytest.skip("needs a CPU with bf16")  # the CPU-independent parts are in the choose_engine tests
    failed = with_bf16_check(tiny_model, tmp_path, False).path
    s = slides["svs20x"]
    base = ("predict", s.slide, "-a", s.annotations, "-m", failed, "--device", "cpu", "--engine", "openvino")
    code, _, err = run_cli(monkeypatch, capsys, *base, "--ov-precision", "bf16", "--json")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "OpenVINO bf16 failed its fidelity check" in err and "--allow-lower-fidelity" in err
    code, out, err = run_cli(monkeypatch, capsys, *base, "--ov-precision", "bf16", "--allow-lower-fidelity",
                             "--out", tmp_path / "out", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["provider"].endswith("CPU bf16") and any(n.startswith("LOWER FIDELITY") for n in report["notes"])
    assert "LOWER FIDELITY" in (tmp_path / "out" / "svs20x.html").read_text()
    code, out, err = run_cli(monkeypatch, capsys, *base, "--json")  # auto precision: f32, nothing to note
    assert code == 0, err
    report = json.loads(out)
    assert report["provider"].endswith("CPU f32") and not any("LOWER FIDELITY" in n for n in report["notes"])
