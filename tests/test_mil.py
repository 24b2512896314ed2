"""Attention-MIL heads (ABMIL, KMIL): ONNX = PyTorch, attention, seeded training, and the unchanged band/verdict
machinery from `train` to a case report."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import PatientSum, table_from_sums
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.protocols import binary_external
from netorigin.export.embeddings import iter_cohort
from netorigin.export.head_file import load_head
from netorigin.export.heads import fit_scorer
from netorigin.export.mil import MilConfig, MilHead, fit_mil
from netorigin.export.onnx_graph import attach_mil_head, export_embedder
from netorigin.export.smoke import tiny_embedder
from netorigin.export.synthetic import make_cohort
from netorigin.export.train import TrainPlan, train
from netorigin.runtime.engines.session import open_session
from netorigin.runtime.model.contract import load_contract
from netorigin.runtime.reports.report import CaseExtras, case_report, patches_geojson, write_case_outputs
from netorigin.runtime.slide.predictor import Predictor
from netorigin.runtime.slide.verdict import PANCREAS, SMALL_INTESTINE, UNCERTAIN, bag_verdict

from .helpers import run_cli

FAST = MilConfig(hidden=32, attention=16, patch_hidden=16, epochs=4)


def bag_cohort(n_per_class: int = 6, others: int = 3, patches: int = 12, dim: int = 64, seed: int = 0) -> Embeddings:
    """Patients whose patches are a mixture: a label-dependent share of 'informative' patches (as MIL assumes)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 1, dim)
    rows, patients, labels = [], [], []
    for index, label in enumerate([0] * n_per_class + [1] * n_per_class + [2] * others):
        share = (0.15, 0.75, 0.45)[label]
        informative = rng.random(patches) < share
        x = np.abs(rng.normal(0.5, 0.3, (patches, dim)) + np.outer(informative, signal))
        rows.append(x)
        patients += [f"p{index:02d}"] * patches
        labels += [label] * patches
    n = len(patients)
    return Embeddings(np.concatenate(rows).astype(np.float32), np.array(patients), np.array(labels),
                      np.array(["A"] * n), np.array(["s"] * n), np.array([str(i) for i in range(n)]))


@pytest.fixture(scope="module", params=["abmil", "kmil"])
def head(request) -> MilHead:
    emb = bag_cohort(dim=2048)
    return fit_mil(request.param, emb, seed=0, config=FAST)


@pytest.fixture(scope="module")
def exported(head):
    embedder, _ = tiny_embedder()
    graph = attach_mil_head(export_embedder(embedder), head)
    return embedder, ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("n", [1, 7, 33])
def test_onnx_equals_pytorch_on_bags_of_any_size(head, exported, n):
    embedder, session = exported
    patches = np.random.default_rng(n).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    decision, score, attention = session.run(["decision", "bag_score", "attention"], {"patches": patches})
    with torch.inference_mode():
        embeddings = embedder(torch.from_numpy(patches)).numpy()
    ref_decision, ref_score, ref_attention = head.bag(embeddings)
    assert decision.shape == attention.shape == (n,) and score.shape == (1,)
    assert np.abs(decision - ref_decision).max() <= 1e-4
    assert abs(score[0] - ref_score) <= 1e-4
    assert np.abs(attention - ref_attention).max() <= 1e-4
    assert attention.sum() == pytest.approx(1.0, abs=1e-5) and (attention >= 0).all()


def test_the_bag_score_is_the_contributions_plus_one_bias(head):
    emb = bag_cohort(dim=2048, seed=5)
    biases = []
    for patient in dict.fromkeys(emb.patients.tolist()):
        contributions, score, _ = head.bag(emb.embeddings[emb.patients == patient])
        biases.append(score - contributions.sum())
    assert np.ptp(biases) < 1e-5  # one bias for every bag: S splits exactly into per-patch contributions


def test_training_is_seeded_and_deterministic():
    emb = bag_cohort()
    a, b, c = (fit_mil("kmil", emb, seed=s, config=FAST) for s in (3, 3, 4))
    assert all(np.array_equal(a.state[k], b.state[k]) for k in a.state)
    assert not all(np.array_equal(a.state[k], c.state[k]) for k in a.state)


def confident_kmil(threshold: float) -> MilHead:
    """A KMIL head whose patch MLP is made very confident, so key recognition drops many patches."""
    head = fit_mil("kmil", bag_cohort(dim=2048), seed=1, config=FAST)
    state = {k: v.copy() for k, v in head.state.items()}
    state["patch.2.weight"] *= 40.0
    return MilHead("kmil", MilConfig(**{**FAST.__dict__, "key_threshold": threshold}), state)


def test_kmil_pools_only_the_hard_patches_and_falls_back_to_all():
    bag = bag_cohort(dim=2048, seed=9).embeddings[:24]
    head = confident_kmil(0.1)
    model = head.module()
    with torch.no_grad():
        h = torch.relu(model.reduce((torch.from_numpy(bag) - model.mean) * model.inv_std))
        q = torch.sigmoid(model.patch(h).diff(dim=1).squeeze(1)).numpy()
    kept = 1 - 4 * (q - 0.5) ** 2 >= 0.1  # the paper's hard-sample score against the threshold
    assert 0 < kept.sum() < len(bag)  # this bag really exercises the selection
    _, score, attention = head.bag(bag)
    assert (attention[~kept] == 0).all() and (attention[kept] > 0).all()
    assert attention.sum() == pytest.approx(1.0, abs=1e-6)
    embedder, _ = tiny_embedder()
    session = ort.InferenceSession(attach_mil_head(export_embedder(embedder), head).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    graph = onnx_head(head)
    onnx_decision, onnx_score, onnx_attention = graph.run(None, {"embedding": bag})
    assert np.abs(onnx_attention - attention).max() <= 1e-6 and abs(onnx_score[0] - score) <= 1e-4
    assert (onnx_attention[~kept] == 0).all()
    assert {o.name for o in session.get_outputs()} >= {"decision", "bag_score", "attention"}
    _, _, attention = MilHead("kmil", MilConfig(**{**FAST.__dict__, "key_threshold": 1.01}), head.state).bag(bag)
    assert (attention > 0).all()  # no patch qualifies: all are pooled


def onnx_head(head: MilHead) -> ort.InferenceSession:
    from netorigin.export.onnx_graph import mil_head_graph

    return ort.InferenceSession(mil_head_graph(head).SerializeToString(), providers=["CPUExecutionProvider"])


def test_bag_verdict_uses_the_sign_and_the_band():
    contributions = np.array([0.5, -0.2, 0.1])
    assert bag_verdict(0.4, contributions, None).verdict == SMALL_INTESTINE
    assert bag_verdict(-0.4, contributions, None).verdict == PANCREAS
    assert bag_verdict(0.0, contributions, None).verdict == PANCREAS  # ties go to class 0
    assert bag_verdict(0.4, contributions, (-1.0, 1.0)).verdict == UNCERTAIN
    assert bag_verdict(1.0, contributions, (-1.0, 1.0)).verdict == SMALL_INTESTINE  # strict band
    v = bag_verdict(-2.0, contributions, (-1.0, 1.0))
    assert (v.votes_small_intestine, v.n_patches, v.patient_sum) == (2, 3, -2.0)
    with pytest.raises(ValueError):
        bag_verdict(float("nan"), contributions, None)


def test_binary_external_fits_once_on_labelled_training_patients():
    train_emb, test_emb = bag_cohort(seed=1), bag_cohort(seed=2)
    fitted = []

    def recording_fit(emb, seed):
        fitted.append(emb)
        return fit_scorer("abmil", emb, seed, FAST)

    result = binary_external(train_emb, test_emb, recording_fit, "abmil", seed=0)
    assert len(fitted) == 1 and set(fitted[0].labels.tolist()) == {0, 1}
    assert len(result["patients"]) == 12  # the labelled external patients only
    truths = {o["patient"]: o["truth"] for o in result["patients"]}
    assert all(truths[p] in (PANCREAS, SMALL_INTESTINE) for p in truths)
    assert 0 <= result["patch_accuracy"] <= 1 and 0 <= result["patient_accuracy"] <= 1
    scorer = fit_scorer("abmil", train_emb.select(train_emb.labels < 2), 0, FAST)
    sums, _ = scorer.score(test_emb.select(test_emb.labels < 2))
    assert [o["patient_sum"] for o in result["patients"]] == pytest.approx([s.s for s in sums], abs=1e-9)


def test_evaluate_compares_heads_side_by_side_with_cost_lines(monkeypatch, capsys, tmp_path):
    bag_cohort(seed=1).save(tmp_path / "train.npz")
    bag_cohort(seed=2).save(tmp_path / "external.npz")
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "train.npz", "--protocol", "binary-external",
                             "--external", tmp_path / "external.npz", "--head", "reference", "--head", "abmil",
                             "--head", "kmil", "--mil-epochs", "3", "--mil-hidden", "16", "--out", tmp_path / "ev")
    assert code == 0, err
    comparison = json.loads((tmp_path / "ev" / "binary-external-comparison.json").read_text())
    rows = {r["head"]: r for r in comparison["rows"]}
    assert set(rows) == {"reference", "abmil", "kmil"}
    # ABMIL's trainable weights with 16 hidden units on 64-d inputs (reduce, attention, bag classifier).
    assert rows["abmil"]["parameters"] == 64 * 16 + 16 + 16 * 128 + 128 + 128 + 1 + 16 * 2 + 2
    # 2 x multiply-adds of reduce, attention (two layers) and the contributions' projection, for 100 patches.
    assert rows["abmil"]["flops_per_case"] == 2 * 100 * (64 * 16 + 16 * 128 + 128 * 1 + 16 * 1)
    assert rows["kmil"]["parameters"] > rows["abmil"]["parameters"]
    assert all(r["time_per_case_ms"] > 0 for r in rows.values())
    for head_name in rows:
        result = json.loads((tmp_path / "ev" / f"binary-external-{head_name}.json").read_text())
        assert result["protocol"] == "binary-external" and len(result["patients"]) == 12
    assert "abmil" in out and "MFLOPs/case" in out


@pytest.fixture(scope="module")
def mil_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("mil-cohort")
    cohort = make_cohort(root, {"pancreas": 4, "small_intestine": 4, "other": 3}, seed=4, mpps=(0.5,),
                         size_um=(1600, 1400))
    embedder, info = tiny_embedder()
    plan = TrainPlan(head="abmil", seed=2, patches_per_case=10, name="mil", mil=FAST)
    result = train(cohort, tmp_path_factory.mktemp("mil-trained"), embedder, info, plan, echo=lambda _: None)
    return cohort, result


def test_train_calibrates_bands_on_the_models_own_bag_scores(mil_model):
    cohort, result = mil_model
    contract = load_contract(result.models["fp32"])
    assert contract.bag_head and contract.record.head.kind == "abmil"
    assert contract.meta["netorigin.case"]["score"] == "bag"
    stored = contract.record.calibration.sums
    rows = result.summary["models"]["fp32"]["sums"]
    assert sorted(r["s"] for r in rows) == pytest.approx([r["s"] for r in stored], abs=0)
    assert all(r["votes_small_intestine"] == int(r["s"] > 0) and r["n_patches"] == 1 for r in rows)  # one voter
    assert result.summary["fp32_vs_head_reference"] == "PyTorch float32"
    assert result.summary["fp32_vs_head_reference_max_abs_delta_s"] < 1e-4
    assert len(contract.bands) == len(result.bands["fp32"].bands) >= 2
    # The runtime's own session, one run per bag, gives exactly the sums the bands were calibrated on.
    session = open_session(contract, "cpu")
    cases = list(iter_cohort(cohort, 10, 2, patients=set(result.split.calibration)))
    sums = [PatientSum(c.patient, c.label, session.run_bag(c.pixels).score) for c in cases]
    assert [r["s"] for r in rows] == [s.s for s in sums]
    assert calibrate_bands(*table_from_sums(sums)).to_json() == result.bands["fp32"].to_json()


def test_a_case_report_carries_attention_and_the_bag_verdict(mil_model, tmp_path):
    cohort, result = mil_model
    root = cohort.parent
    row = next(line.split(",") for line in cohort.read_text().splitlines()[1:] if line.startswith("oth"))
    predictor = Predictor(result.models["fp32"], device="cpu", confidence="1")
    case = predictor.predict_case([root / row[3]], [root / row[4]])
    report = case_report(case)
    attention = [p["attention"] for p in report["patches"]]
    assert len(attention) == 10 and sum(attention) == pytest.approx(1.0, abs=1e-5)
    assert report["score"] == "bag" and report["model"]["score"] == "bag"
    band = (case.band.lower, case.band.upper)
    assert report["verdict"] == bag_verdict(report["patient_sum"], case.decisions, band).verdict
    # S is the bag score: the contributions plus the bag classifier's bias, not their sum alone.
    head = load_head(result.head_path)["pipeline"]
    bias = float(head.state["bag.bias"][1] - head.state["bag.bias"][0])
    assert report["patient_sum"] == pytest.approx(float(np.sum(case.decisions)) + bias, abs=1e-6)
    assert abs(bias) > 1e-6
    no_band = Predictor(result.models["fp32"], device="cpu", confidence="0")
    unbanded = case_report(no_band.predict_case([root / row[3]], [root / row[4]]))
    assert unbanded["verdict"] == (SMALL_INTESTINE if unbanded["patient_sum"] > 0 else PANCREAS)
    features = patches_geojson(case, 0)["features"]
    assert all("attention" in f["properties"]["measurements"] for f in features)
    written = write_case_outputs(case, tmp_path, CaseExtras(geojson=True, thumbnail=True))
    page = next(p for p in written if p.suffix == ".html").read_text()  # the case page lists where the head looked
    top = sorted(report["patches"], key=lambda p: -p["attention"])[:5]
    table = page[page.index('id="top-attention"'):page.index("</table>", page.index('id="top-attention"'))]
    assert [f"{p['attention']:.3f}" for p in top] == [cell.split("</td>")[0] for cell in
                                                      table.split("<td>")[4::5]]


def test_fit_calibrate_export_commands_take_a_mil_head(monkeypatch, capsys, tmp_path, tiny_model):
    rng = np.random.default_rng(0)
    rows = ["patient,label,specimen,slide,path"]
    for p, label in enumerate(["pancreas"] * 3 + ["small_intestine"] * 3 + ["other"] * 2):
        for k in range(3):
            img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8) // (2 if label == "pancreas" else 1)
            Image.fromarray(img).save(tmp_path / f"p{p}_{k}.png")
            rows.append(f"p{p},{label},A,s{p},p{p}_{k}.png")
    (tmp_path / "patches.csv").write_text("\n".join(rows) + "\n")
    code, _, err = run_cli(monkeypatch, capsys, "embed", tmp_path / "patches.csv", "-o", tmp_path / "emb.npz",
                           "--weights-kind", "random", "--patches-per-case", "3", "--engine", "onnx")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "fit", tmp_path / "emb.npz", "-o", tmp_path / "head.skops",
                             "--head", "kmil", "--mil-epochs", "2", "--mil-hidden", "16")
    assert code == 0, err
    assert "fitted kmil on 18 patches" in out and "(6 patients)" in out
    code, out, err = run_cli(monkeypatch, capsys, "calibrate", "--embeddings", tmp_path / "emb.npz", "--head",
                             tmp_path / "head.skops", "-o", tmp_path / "bands.json", "--allow-in-sample")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "export", "--head", tmp_path / "head.skops", "--weights-kind",
                           "random", "--bands", tmp_path / "bands.json", "--precision", "fp16", "-o",
                           tmp_path / "m16.onnx")
    assert code != 0 and "kmil head exports as fp32 only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m16.onnx").exists()
    code, _, err = run_cli(monkeypatch, capsys, "export", "--head", tmp_path / "head.skops", "--weights-kind",
                           "random", "--bands", tmp_path / "bands.json", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    contract = load_contract(tmp_path / "m.onnx")
    assert contract.bag_head and contract.record.head.kind == "kmil" and contract.bands
    emb = Embeddings.load(tmp_path / "emb.npz")
    head = load_head(tmp_path / "head.skops")["pipeline"]
    bands_sums, _ = head.score(emb)  # what calibrate saw: the head's own bag scores
    assert [b.c for b in contract.bands] == [b.c for b in calibrate_bands(*table_from_sums(bands_sums)).bands]
    patients = emb.patients == "p4"
    pixels = np.stack([np.asarray(Image.open(tmp_path / f"p4_{k}.png").convert("RGB").resize((224, 224),
                                                                                              Image.BILINEAR))
                       for k in range(3)])
    out = open_session(contract, "cpu").run_bag(pixels)
    assert out.score == pytest.approx(head.bag(emb.embeddings[patients])[1], abs=1e-3)
    # A bag head's sums never calibrate a patch-sum model's bands (other scale), nor any head another model's.
    code, _, err = run_cli(monkeypatch, capsys, "calibrate", "--embeddings", tmp_path / "emb.npz", "--head",
                           tmp_path / "head.skops", "--model", tiny_model, "-o", tmp_path / "wrong.onnx",
                           "--allow-in-sample")
    assert code == 1 and "this head (kmil) is not the one in tiny.onnx (reference" in err
    assert not (tmp_path / "wrong.onnx").exists()


def test_openvino_runs_a_bag_model_like_onnx_runtime(mil_model):
    from netorigin.runtime.engines.openvino_session import open_openvino

    _, result = mil_model
    contract = load_contract(result.models["fp32"])
    patches = np.random.default_rng(3).integers(0, 256, (10, 224, 224, 3), dtype=np.uint8)
    reference = open_session(contract, "cpu").run_bag(patches)
    bag = open_openvino(contract, "f32").run_bag(patches)
    # OpenVINO computes the float64 head in float32: equal to 1e-6 relative (S is in the thousands here).
    assert bag.score == pytest.approx(reference.score, rel=1e-6)
    np.testing.assert_allclose(bag.decisions, reference.decisions, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(bag.attention, reference.attention, atol=1e-5)
