"""`netorigin bench`: every engine x precision of the given models measured side by side on one slide, each beside
its fidelity record, and a recommendation that only a configuration that passed its check here can get."""

from __future__ import annotations

import json

import pytest

from netorigin.export.smoke import build_smoke_model, tiny_embedder
from netorigin.runtime.engines.openvino_session import BATCH as OPENVINO_BATCH
from netorigin.runtime.engines.openvino_session import bf16_available
from netorigin.runtime.engines.session import CPU_BATCH
from netorigin.runtime.slide.predictor import Predictor

from .helpers import fidelity_record, run_cli, with_record


@pytest.fixture(scope="module")
def int8_variant(tmp_path_factory):
    """The tiny model's INT8 variant (same head; no bands: a variant's come from its own decisions), with no
    fidelity check yet."""
    embedder, info = tiny_embedder()
    return build_smoke_model(tmp_path_factory.mktemp("int8") / "tiny-int8.onnx", embedder, info,
                             patches_per_case=20, with_bands=False, precision="int8")


def bench_json(monkeypatch, capsys, slide, *models, extra=()):
    args = ["bench", slide.slide, "--annotations", slide.annotations, "--device", "cpu", "--batch", "8",
            "--json", "--quiet", *extra]
    for model in models:
        args += ["-m", model]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    return json.loads(out)


def test_every_configuration_is_measured_with_its_fidelity_and_seeds(monkeypatch, capsys, tiny_model, int8_variant,
                                                                     slides):
    slide = slides["svs20x"]
    record = bench_json(monkeypatch, capsys, slide, tiny_model, int8_variant)
    rows = {row["configuration"]: row for row in record["configurations"]}
    engines = ("onnxruntime cpu", "openvino f32")
    bf16 = {"tiny.onnx (fp32) on openvino bf16"} if bf16_available() else set()  # only where this CPU has it
    assert set(rows) == {f"{name} on {engine}" for name in ("tiny.onnx (fp32)", "tiny-int8.onnx (int8)")
                         for engine in engines} | bf16
    for name, row in rows.items():
        product = OPENVINO_BATCH if " on openvino " in name else CPU_BATCH  # each engine's own product batch
        assert row["started"] and row["product_batch"] == product
        assert set(row["patches_per_s"]) == {"8", str(product)}
        assert all(s["n"] == 5 and s["min"] <= s["median"] <= s["max"] for s in row["patches_per_s"].values())
        assert row["case_open_to_verdict_s"]["n"] == 5 and len(row["patient_sums"]) == 5
    reference = rows["tiny.onnx (fp32) on onnxruntime cpu"]
    assert reference["fidelity"]["reference"] and reference["vs_reference"]["verdict_flips"] == 0
    int8 = rows["tiny-int8.onnx (int8) on onnxruntime cpu"]
    assert not int8["fidelity"]["passed_here"] and "has no recorded fidelity check" in int8["fidelity"]["problems"][0]
    assert int8["vs_reference"]["max_abs_dS"] > 0  # a different model, compared on the same seeds
    # each repetition is a new case seed: the reference's sums are what predict gives with seeds 1..5
    predictor = Predictor(tiny_model, device="cpu")
    assert record["seeds"] == [1, 2, 3, 4, 5]
    expected = [predictor.for_run(seed, None, predictor.rules, 4).predict_case(
        [slide.slide], [slide.annotations]).verdict.patient_sum for seed in record["seeds"]]
    assert reference["patient_sums"] == expected and len(set(expected)) > 1


def test_the_recommendation_is_the_fastest_that_passed_its_check(monkeypatch, capsys, tiny_model, int8_variant,
                                                                 slides, tmp_path):
    checked = tmp_path / "checked-int8.onnx"
    with_record(int8_variant, checked, fidelity_vs_fp32=fidelity_record())
    record = bench_json(monkeypatch, capsys, slides["svs20x"], tiny_model, int8_variant, checked)
    rows = {row["configuration"]: row for row in record["configurations"]}
    assert rows["checked-int8.onnx (int8) on onnxruntime cpu"]["fidelity"]["passed_here"]
    passed = [row for row in rows.values() if row["fidelity"]["passed_here"]]
    chosen = rows[record["recommendation"]["configuration"]]
    assert chosen in passed and "tiny-int8.onnx" not in chosen["configuration"]
    fastest = min(passed, key=lambda row: row["case_open_to_verdict_s"]["median"])
    assert chosen["case_open_to_verdict_s"]["median"] == fastest["case_open_to_verdict_s"]["median"]


def test_the_table_shows_fidelity_beside_speed_and_the_recommendation(monkeypatch, capsys, tiny_model,
                                                                       int8_variant, slides, tmp_path):
    slide = slides["svs20x"]
    out_file = tmp_path / "bench.json"
    code, out, err = run_cli(monkeypatch, capsys, "bench", slide.slide, "--annotations", slide.annotations,
                             "-m", tiny_model, "-m", int8_variant, "--device", "cpu", "--batch", "8",
                             "--out", out_file)
    assert code == 0, err
    lines = out.splitlines()
    int8_line = next(line for line in lines if line.startswith("tiny-int8.onnx (int8) on onnxruntime cpu "))
    assert int8_line.endswith("NOT PASSED") and f"{CPU_BATCH}: " in int8_line
    assert any(line.startswith("tiny.onnx (fp32) on onnxruntime cpu ") and line.endswith("reference")
               for line in lines)
    assert lines[-1].startswith("recommended: tiny.onnx (fp32) on ")
    assert json.loads(out_file.read_text())["recommendation"]["model"] == str(tiny_model)


@pytest.mark.parametrize("args, problem", [
    (["--reps", "4"], "--reps"), (["--batch", "0"], "--batch"),
])
def test_too_few_repetitions_or_a_bad_batch_are_usage_errors(monkeypatch, capsys, tiny_model, slides, args, problem):
    slide = slides["svs20x"]
    code, out, err = run_cli(monkeypatch, capsys, "bench", slide.slide, "-m", tiny_model, *args)
    assert code == 2 and out == "" and problem in err and len(err.splitlines()) == 1


def test_a_missing_slide_is_one_line_and_no_figures(monkeypatch, capsys, tiny_model, tmp_path):
    missing = tmp_path / "nowhere.svs"
    code, out, err = run_cli(monkeypatch, capsys, "bench", missing, "-m", tiny_model, "--device", "cpu")
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and str(missing) in err
