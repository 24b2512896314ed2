"""`netorigin train`: the paper's fit / calibration split, and bands from each model's own decisions."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import read_sums, table_from_sums
from netorigin.calibration.errors import InputDataError
from netorigin.calibration.splits import patient_digests
from netorigin.export.embeddings import cohort_patients, iter_cohort
from netorigin.export.head_file import load_head
from netorigin.export.precision import calibration_batches
from netorigin.export.smoke import tiny_embedder
from netorigin.export.synthetic import make_cohort
from netorigin.export.train import TrainPlan, train
from netorigin.runtime.engines.session import open_session
from netorigin.runtime.errors import ConfigurationError
from netorigin.runtime.model.contract import load_contract
from netorigin.runtime.progress import Bar
from netorigin.runtime.slide.predictor import Predictor
from netorigin.runtime.slide.verdict import patient_sum

from .helpers import rebanded, run_cli, with_record

PATCHES = 12


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-cohort")
    return make_cohort(root, {"pancreas": 5, "small_intestine": 5, "other": 3}, seed=3, mpps=(0.5,),
                       size_um=(1600, 1400))


class RecordingBar(Bar):
    """A bar off the terminal that remembers how far it was extended."""

    def __init__(self) -> None:
        super().__init__()
        self.extended = 0

    def extend(self, more: int) -> None:
        self.extended += more


PROGRESS = RecordingBar()  # what `trained` reported (its progress bar's steps)


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    embedder, info = tiny_embedder()
    plan = TrainPlan(seed=1, patches_per_case=PATCHES, precisions=("fp32", "fp16", "int8"),
                     int8_calibration_patches=32, name="t")
    return train(cohort, tmp_path_factory.mktemp("trained"), embedder, info, plan, echo=lambda _: None,
                 on_step=PROGRESS)


def test_progress_steps_once_per_patient_read_and_int8_batch(trained, cohort):
    """The bar `train` shows counts every patient of the cohort once (fit patients embedded, calibration scored),
    then, extended once the split is known, the fit patients re-read for INT8, each INT8 calibration batch, and
    the accuracy control's steps (a node ranked, a candidate checked); it ends full."""
    assert len(cohort_patients(cohort)) == len(trained.split.fit) + len(trained.split.calibration)
    search = trained.summary["int8_calibration"]["search"]
    assert PROGRESS.extended == len(trained.split.fit) + calibration_batches(32) + len(search["ranking"]) \
        + len(search["curve"])
    assert PROGRESS.done == len(cohort_patients(cohort)) + PROGRESS.extended


def test_int8_quantises_the_most_of_its_cheapest_nodes_that_pass_its_check(trained):
    """Accuracy control: the INT8 model is the point of its curve with the most nodes quantised that passed (one
    more failed), or the best point marked failed; what it records as its check is that point's."""
    calibration = trained.summary["int8_calibration"]
    search = calibration["search"]
    check = trained.summary["models"]["int8"]["fidelity_vs_fp32"]
    tried = {p["quantised"]: p for p in search["curve"]}
    chosen = tried[search["quantised"]]
    assert calibration["accuracy_control"] and len(calibration["kept_float_nodes"]) == len(search["kept_float"])
    assert search["quantised"] + len(search["kept_float"]) == len(search["ranking"])
    assert (chosen["verdict_flips"], chosen["max_abs_delta_s_over_band_width"], chosen["passed"]) == (
        check["verdict_flips"], check["max_abs_delta_s_over_band_width"], check["passed"])
    assert search["passed"] == check["passed"]
    if search["passed"] and search["quantised"] < len(search["ranking"]):
        assert not tried[search["quantised"] + 1]["passed"]
    recorded = load_contract(trained.models["int8"]).meta["netorigin.precision"]["calibration_set"]
    assert recorded["kept_float_nodes"] == calibration["kept_float_nodes"]


def test_split_is_stratified_and_disjoint(trained, cohort):
    split = trained.split
    assert not set(split.fit) & set(split.calibration)
    assert not any(p.startswith("oth") for p in split.fit)  # other origins never train the head
    assert {p for p in split.calibration if p.startswith("oth")} == {"oth010", "oth011", "oth012"}
    assert sum(p.startswith("pan") for p in split.fit) == sum(p.startswith("sma") for p in split.fit) == 3
    head = load_head(trained.head_path)
    assert head["info"]["fit_patients"] == sorted(split.fit)
    for path in trained.models.values():
        record = load_contract(path).record
        assert record.head.fit_patients_sha256 == tuple(patient_digests(split.fit))
        assert record.calibration.patients_sha256 == tuple(patient_digests(split.calibration))


def test_each_model_has_bands_from_its_own_runtime_decisions(trained, cohort):
    """Recompute every model's calibration sums with the runtime's session; the stored bands must follow."""
    cases = list(iter_cohort(cohort, PATCHES, 1, patients=set(trained.split.calibration)))
    tables = {}
    for precision, path in trained.models.items():
        contract = load_contract(path)
        session = open_session(contract, "cpu")
        pi, others = [], []
        for case in cases:
            s = patient_sum(session.run(case.pixels)[0])
            (others if case.label == 2 else pi).append(s)
        expected = calibrate_bands(pi, others)
        assert [b.__dict__ for b in contract.bands] == [b.__dict__ for b in expected.bands]
        assert contract.record.calibration.in_sample is False
        tables[precision] = expected
    # the variants really are calibrated separately: INT8's sums differ from fp32's
    assert tables["int8"].bands != tables["fp32"].bands


def test_summary_reports_flips_and_sklearn_difference(trained):
    summary = trained.summary
    assert set(summary["models"]) == {"fp32", "fp16", "int8"}
    assert summary["models"]["fp32"]["fidelity_vs_fp32"]["verdict_flips"] == 0
    assert summary["models"]["fp32"]["fidelity_vs_fp32"]["max_abs_delta_s_over_band_width"] == 0.0
    assert summary["models"]["int8"]["fidelity_vs_fp32"]["measured_on"]["provider"] == "CPUExecutionProvider"
    assert 0 <= summary["fp32_vs_head_reference_max_abs_delta_s"] < 1e-3


def test_embeddings_input_refuses_variants(tmp_path, trained):
    emb = tmp_path / "emb.npz"
    from netorigin.calibration.embeddings import Embeddings

    rng = np.random.default_rng(0)
    n = 40
    Embeddings(rng.normal(size=(n, 2048)).astype(np.float32), np.repeat([f"p{i}" for i in range(10)], 4),
               np.repeat([0, 1] * 5, 4), np.array(["A"] * n), np.array(["s"] * n), np.arange(n).astype(str)).save(emb)
    embedder, info = tiny_embedder()
    with pytest.raises(InputDataError, match="need the cohort's pixels"):
        train(emb, tmp_path / "out", embedder, info, TrainPlan(precisions=("fp32", "int8")), echo=lambda _: None)


def test_split_file_with_an_other_origin_patient_in_fit_is_refused(tmp_path, cohort, monkeypatch, capsys):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"fit": ["pan000", "sma005", "oth010"],
                                 "calibration": ["pan001", "pan002", "pan003", "pan004", "sma006", "sma007",
                                                 "sma008", "sma009", "oth011", "oth012"]}))
    code, out, err = run_cli(monkeypatch, capsys, "train", cohort, "-o", tmp_path / "out", "--weights-kind",
                             "random", "--split", split, "--patches-per-case", "4")
    assert code == 1
    assert err.strip() == f"error: {split}: other-origin patients in fit: oth010"
    assert not (tmp_path / "out" / "netorigin.onnx").exists()


def test_in_sample_calibration_is_stated_in_model_and_report(monkeypatch, capsys, tmp_path, tiny_model, slides):
    """The research flag writes in_sample into the model's record and every report says so."""
    sums = tmp_path / "sums.csv"
    sums.write_text("patient,label,sum\n" + "\n".join(f"p{i},{['pancreas', 'small_intestine', 'other'][i % 3]},"
                                                      f"{(i - 6) * 1.5}" for i in range(12)))
    target = tmp_path / "in-sample.onnx"
    from netorigin.calibration.bands import calibrate_bands as fit_bands

    rows, _ = read_sums(sums)
    rebanded(tiny_model, fit_bands(*table_from_sums(rows)), target, rows, in_sample=True, in_sample_patients=2)
    s = slides["svs20x"]
    code, out, err = run_cli(monkeypatch, capsys, "predict", s.slide, "-a", s.annotations, "-m", target, "--json")
    assert code == 0, err
    assert any("RESEARCH ONLY" in note for note in json.loads(out)["notes"])
    code, out, err = run_cli(monkeypatch, capsys, "predict", s.slide, "-a", s.annotations, "-m", tiny_model, "--json")
    assert code == 0, err
    assert not any("RESEARCH ONLY" in note for note in json.loads(out)["notes"])


def test_train_refuses_a_name_that_leaves_the_output_folder(tmp_path):
    from netorigin.export.smoke import tiny_embedder
    from netorigin.export.train import TrainPlan, train
    from netorigin.runtime.errors import ConfigurationError

    embedder, info = tiny_embedder()
    with pytest.raises(ConfigurationError, match=r"model name '../../x' is not usable as a file name"):
        train(tmp_path / "cohort.csv", tmp_path / "out", embedder, info, TrainPlan(name="../../x"))
    assert not (tmp_path / "out").exists()


def test_train_checks_every_slide_before_writing_anything(tmp_path, slides):
    """A slide that cannot give the field of view (an image editor's 72 dpi) among the last patients stops the
    run before any embedding or output, naming it."""
    from netorigin.export.smoke import tiny_embedder
    from netorigin.export.synthetic import write_pyramid
    from netorigin.export.train import TrainPlan, train
    from netorigin.runtime.errors import SlideError

    from .test_resolution import tissue

    editor = tmp_path / "editor.tif"
    write_pyramid(editor, tissue(300, 250), 25_400 / 72, downsamples=(1,), svs=False)
    good = slides["svs20x"]
    rows = [f"p{i},{'pancreas' if i % 2 else 'small_intestine'},A,{good.slide},{good.annotations}" for i in range(6)]
    rows.append(f"late,other,A,{editor},{good.annotations}")
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("case,label,specimen,slide,annotations\n" + "\n".join(rows) + "\n")
    embedder, info = tiny_embedder()
    with pytest.raises(SlideError, match="outside what slide scanners produce") as exc:
        train(cohort, tmp_path / "out", embedder, info, TrainPlan(patches_per_case=4))
    assert str(editor) in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_fp32_model_records_the_openvino_bf16_check_where_the_cpu_has_bf16(trained, cohort):
    from netorigin.runtime.engines.openvino_session import bf16_available, open_openvino

    checks = {p: load_contract(path).record.engine_checks for p, path in trained.models.items()}
    assert checks["fp16"] == {} and "openvino-bf16" not in checks["int8"]  # only the fp32 model runs as bf16
    if not bf16_available():
        pytest.skip("train runs the bf16 check only where the CPU has bf16")
    check = checks["fp32"]["openvino-bf16"]
    assert check.patients == len(trained.split.calibration) and check.bands_checked >= 2
    assert check.passed == (check.verdict_flips == 0 and check.max_abs_delta_s_over_band_width <= 0.01)
    assert check.measured_on.engine == "openvino" and check.measured_on.provider == "CPU bf16"
    # Recompute the largest |dS| with the runtime's own sessions on the calibration patients.
    contract = load_contract(trained.models["fp32"])
    ov, reference = open_openvino(contract, "bf16"), open_session(contract, "cpu")
    deltas = [abs(patient_sum(ov.run(c.pixels)[0]) - patient_sum(reference.run(c.pixels)[0]))
              for c in iter_cohort(cohort, PATCHES, 1, patients=set(trained.split.calibration))]
    band = trained.bands["fp32"].at(trained.bands["fp32"].default_confidence)
    assert check.max_abs_delta_s_over_band_width == pytest.approx(max(deltas) / (band.upper - band.lower), rel=1e-6)


def test_the_int8_file_records_its_own_openvino_check_and_auto_follows_it(trained, cohort, tmp_path):
    """OpenVINO runs the INT8 file's QDQ graph with its own kernels: train checks it there too (under the INT8
    file's bands), `auto` chooses OpenVINO for it only where that check passed here, and an OpenVINO run without
    a passing check is refused like any unchecked variant."""
    from netorigin.runtime.engines.openvino_session import open_openvino
    from netorigin.runtime.engines.session import choose_engine, fidelity_problems

    contract = load_contract(trained.models["int8"])
    check = contract.record.engine_checks["openvino-int8"]
    assert check.measured_on.engine == "openvino" and check.measured_on.provider == "CPU f32"
    ov, reference = open_openvino(contract, "f32"), open_session(load_contract(trained.models["fp32"]), "cpu")
    deltas = [abs(patient_sum(ov.run(c.pixels)[0]) - patient_sum(reference.run(c.pixels)[0]))
              for c in iter_cohort(cohort, PATCHES, 1, patients=set(trained.split.calibration))]
    band = trained.bands["fp32"].at(trained.bands["fp32"].default_confidence)
    assert check.max_abs_delta_s_over_band_width == pytest.approx(max(deltas) / (band.upper - band.lower), rel=1e-6)
    for passed in (True, False):
        variant = with_record(trained.models["int8"], tmp_path / f"int8-{passed}.onnx",
                              engine_checks={"openvino-int8": replace(check, passed=passed)})
        engine, why = choose_engine(variant, "cpu")
        assert engine == ("openvino" if passed else "onnxruntime")
        problems = fidelity_problems(variant, open_openvino(variant, "f32"))
        assert (problems == []) == passed
        assert why.startswith("OpenVINO runs this INT8 file" if passed else "OpenVINO INT8 failed its fidelity check")


def test_variants_record_their_fidelity_to_fp32_and_reports_say_when_it_failed(trained, tmp_path, slides):
    """Each fp16 / INT8 model stores flips (each under its own bands) and max |dS| / fp32 band width against the fp32
    model on the calibration patients, as train's summary measured them; a variant that failed the check makes
    every report say so, one that passed adds nothing."""
    assert load_contract(trained.models["fp32"]).record.fidelity_vs_fp32 is None
    for precision in ("fp16", "int8"):
        contract = load_contract(trained.models[precision])
        check = asdict(contract.record.fidelity_vs_fp32)
        delta = max(abs(a["s"] - b["s"]) for a, b in zip(trained.summary["models"][precision]["sums"],
                                                         trained.summary["models"]["fp32"]["sums"]))
        band = trained.bands["fp32"].at(trained.bands["fp32"].default_confidence)
        assert check["max_abs_delta_s_over_band_width"] == pytest.approx(delta / (band.upper - band.lower))
        assert check["passed"] == (check["verdict_flips"] == 0 and
                                   check["max_abs_delta_s_over_band_width"] <= check["threshold"])
        assert check["patients"] == len(trained.split.calibration)
        assert check["bands_checked"] == len(trained.bands["fp32"].bands)
        assert check["measured_on"]["provider"] == "CPUExecutionProvider"
        for passed in (True, False):
            recorded = with_record(trained.models[precision], tmp_path / f"{precision}-{passed}.onnx",
                                   fidelity_vs_fp32=replace(contract.record.fidelity_vs_fp32, passed=passed))
            s = slides["svs20x"]
            if not passed:  # refused unless asked for explicitly
                with pytest.raises(ConfigurationError, match=f"this {precision} model failed its fidelity check"):
                    Predictor(recorded, device="cpu", engine="onnxruntime")
            predictor = Predictor(recorded, device="cpu", engine="onnxruntime", allow_lower_fidelity=not passed)
            notes = predictor.predict_case([s.slide], [s.annotations]).notes
            lower = [n for n in notes if n.startswith("LOWER FIDELITY")]
            assert len(lower) == (0 if passed else 1)
            if not passed:
                assert f"this {precision} model" in lower[0]
                assert f"{check['max_abs_delta_s_over_band_width']:.1%}" in lower[0]
        elsewhere = replace(contract.record.fidelity_vs_fp32, passed=True,
                            measured_on=replace(contract.record.fidelity_vs_fp32.measured_on,
                                                provider="CUDAExecutionProvider"))
        moved = with_record(trained.models[precision], tmp_path / f"{precision}-gpu.onnx", fidelity_vs_fp32=elsewhere)
        with pytest.raises(ConfigurationError, match="measured elsewhere: provider 'CUDAExecutionProvider'"):
            Predictor(moved, device="cpu", engine="onnxruntime")


def test_a_misnamed_int8_stage_is_refused_before_any_output(cohort, tmp_path):
    from netorigin.export.precision import Int8Recipe

    embedder, info = tiny_embedder()
    plan = TrainPlan(seed=1, patches_per_case=PATCHES, precisions=("fp32", "int8"), name="bad",
                     int8=Int8Recipe(("trunk.layer9",)))
    with pytest.raises(InputDataError, match="'trunk.layer9' names no convolution"):
        train(cohort, tmp_path / "out", embedder, info, plan, echo=lambda _: None)
    assert not any((tmp_path / "out").iterdir())


def test_int8_by_nncf_records_the_check_it_was_judged_by_on_openvino(cohort, tmp_path):
    """`--int8-nncf`: NNCF's accuracy control makes the INT8 file, judged on OpenVINO; the file's own
    `openvino-int8` engine check (under the file's bands) sees the same |dS| on the same patients."""
    from netorigin.export.precision import Int8Recipe

    embedder, info = tiny_embedder()
    plan = TrainPlan(seed=1, patches_per_case=PATCHES, precisions=("fp32", "int8"), int8_calibration_patches=32,
                     int8=Int8Recipe(nncf=True, nncf_iterations=2), name="n")
    done = train(cohort, tmp_path, embedder, info, plan, echo=lambda _: None)
    calibration = done.summary["int8_calibration"]
    nncf = calibration["nncf"]
    assert calibration["method"] == "nncf-accuracy-control" and calibration["accuracy_control"]
    assert calibration["nncf_iterations"] == 2
    assert "search" not in calibration and nncf["int8_nodes"] > 0
    contract = load_contract(done.models["int8"])
    recorded = contract.record.engine_checks["openvino-int8"]
    assert nncf["check"]["measured_on"]["engine"] == "openvino"
    assert recorded.max_abs_delta_s_over_band_width == nncf["check"]["max_abs_delta_s_over_band_width"]
    assert recorded.patients == nncf["check"]["patients"] and nncf["passed"] == nncf["check"]["passed"]
    assert contract.meta["netorigin.precision"]["calibration_set"]["nncf"]["int8_nodes"] == nncf["int8_nodes"]


def test_int8_nncf_refuses_recipe_options_it_would_not_use(cohort, tmp_path, monkeypatch, capsys):
    for extra in (("--int8-nncf",), ("--int8-nncf", "--precision", "int8", "--int8-keep-float", "trunk.layer4"),
                  ("--int8-nncf", "--precision", "int8", "--int8-fixed-recipe")):
        code, _, err = run_cli(monkeypatch, capsys, "train", cohort, "-o", tmp_path / "out", "--weights-kind",
                               "random", *extra)
        assert code == 2 and "--int8-nncf needs --precision int8 and chooses its own float nodes" in err
        assert not (tmp_path / "out").exists()
