"""Exported ONNX model vs the reference pipeline (PyTorch ResNet50 + scikit-learn), seeded random weights."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import calibration_record
from netorigin.export.embedder import build_embedder, embed_uint8
from netorigin.export.heads import fit_head, head_arrays
from netorigin.export.metadata import build_metadata, model_record
from netorigin.export.onnx_graph import MAX_IR_VERSION, attach_head, export_embedder
from netorigin.runtime.engines.session import open_session
from netorigin.runtime.model.contract import load_contract, with_metadata
from netorigin.runtime.slide.verdict import patient_verdict


def _patches(n: int, seed: int, dark: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
    patches = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)  # blocky texture, not pure noise
    return patches // 2 if dark else patches


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    embedder, info = build_embedder("random", seed=0)
    proto = export_embedder(embedder)
    session = ort.InferenceSession(proto.SerializeToString())
    train = np.concatenate([_patches(60, 1, False), _patches(60, 2, True)])
    train_emb = session.run(None, {"patches": train})[0]
    pipeline = fit_head("reference", train_emb, np.repeat([1, 0], 60))
    arrays = head_arrays(pipeline)
    model = attach_head(copy.deepcopy(proto), arrays)
    sums = [pipeline.decision_function(train_emb[i:i + 20].astype(np.float64)).sum() for i in range(0, 120, 20)]
    bands = calibrate_bands(sums, np.array(sums[:3]) * 0.5)
    calibration = calibration_record(bands, [], origin="test", decisions="the fitted head")
    record = model_record(info, "reference", [], demo=True, calibration=calibration)
    meta = build_metadata(info, arrays, bands, record, patches_per_case=100, cohort={"synthetic": True})
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    path.write_bytes(with_metadata(model.SerializeToString(), meta))
    test = np.concatenate([_patches(50, 3, False), _patches(50, 4, True)])
    return {"embedder": embedder, "pipeline": pipeline, "path": path, "test": test, "model": model, "bands": bands}


@pytest.fixture(scope="module")
def runtime_output(exported):
    """Decisions and embeddings of the test patches from netorigin's runtime session (computed once)."""
    session = open_session(load_contract(exported["path"]), device="cpu")
    return session.run(exported["test"], with_embeddings=True)


def test_single_file_ir_version_and_io(exported):
    model = onnx.load(str(exported["path"]))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= MAX_IR_VERSION
    (inp,) = model.graph.input
    assert inp.name == "patches" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == [224, 224, 3] and isinstance(dims[0], str)
    assert [o.name for o in model.graph.output] == ["decision", "embedding"]
    assert not any(n.domain == "ai.onnx.ml" for n in model.graph.node)


def test_embedding_and_decision_parity_with_reference_pipeline(exported, runtime_output):
    test = exported["test"]
    reference_emb = embed_uint8(exported["embedder"], test)
    reference_dec = exported["pipeline"].decision_function(reference_emb.astype(np.float64))
    decision, embedding = runtime_output
    rel = np.abs(embedding - reference_emb).max() / np.abs(reference_emb).max()
    assert rel <= 1e-4
    assert np.abs(decision - reference_dec).max() <= 1e-4
    assert abs(float(np.sum(decision, dtype=np.float64)) - float(reference_dec.sum())) <= 1e-3
    assert np.array_equal(decision > 0, reference_dec > 0)
    assert np.std(reference_dec) > 0.05  # the comparison is not between constants
    ours = patient_verdict(decision, None)
    ref = patient_verdict(reference_dec, None)
    assert ours.verdict == ref.verdict and ours.votes_small_intestine == ref.votes_small_intestine


def _into_band(values: np.ndarray, fixed: np.ndarray, n: int, lower: float, upper: float) -> np.ndarray:
    """Indices (with repetition) of n - len(fixed) entries of `values` whose sum with values[fixed] lies near the
    middle of (lower, upper): greedily, each pick the value closest to what is left per remaining pick."""
    picks = list(fixed)
    target = (lower + upper) / 2
    while len(picks) < n:
        per_pick = (target - float(values[picks].sum())) / (n - len(picks))
        candidates = np.flatnonzero(values > 0)
        picks.append(int(candidates[np.argmin(np.abs(values[candidates] - per_pick))]))
    return np.array(picks)


def test_bare_onnxruntime_and_json_recompute_the_verdict(exported, runtime_output):
    """What scanner software does without our code: onnxruntime + json only, the README's recipe. It must give
    the verdicts of netorigin's runtime (its session, its band from the contract, its rule) on cases that reach
    every branch of the rule."""
    session = ort.InferenceSession(str(exported["path"]), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["netorigin.schema"] == 3
    classes = meta["netorigin.classes"]
    assert classes == {"0": "pancreas", "1": "small_intestine"}
    n = meta["netorigin.case"]["patches_per_case"]
    c = meta["netorigin.default_confidence"]
    band = next(b for b in meta["netorigin.bands"] if b["c"] == c)
    table = exported["bands"]  # the band a scanner finds with json alone is the one calibrated, at the default c
    assert c == table.default_confidence and band == asdict(table.at(c))

    def scanner(decisions: np.ndarray) -> tuple[str, float, int]:
        s = 0.0
        for d in decisions.tolist():  # float64 decisions, summed in patch order
            s += d
        votes = int((decisions > 0).sum())
        if band["lower"] < s < band["upper"]:
            return "uncertain", s, votes
        return (classes["1"] if 2 * votes > n else classes["0"]), s, votes

    test = exported["test"]
    bare = session.run(["decision"], {"patches": test})[0]
    assert bare.dtype == np.float64 and bare.shape == (len(test),)
    runtime_band = load_contract(exported["path"]).band(None)
    ours = runtime_output[0]
    # A patch's decision does not depend on the other patches of its batch, so a case is a choice of
    # indices into the decisions of the test patches.
    light, dark = np.flatnonzero(bare > 0), np.flatnonzero(bare <= 0)
    assert len(light) == len(dark) == 50
    cases = {
        "50/50 vote, S > 0: the tie goes to pancreas": (np.arange(100), "pancreas"),
        "S inside the band": (_into_band(bare, dark[:45], n, band["lower"], band["upper"]), "uncertain"),
        "S above the band, majority small intestine": (np.r_[light, light], "small_intestine"),
        "S below the band, majority pancreas": (np.r_[light[:40], dark, dark[:10]], "pancreas"),
    }
    for name, (idx, expected) in cases.items():
        assert len(idx) == n, name
        verdict, s, votes = scanner(bare[idx])
        v = patient_verdict(ours[idx], (runtime_band.lower, runtime_band.upper))
        assert verdict == v.verdict == expected, (name, verdict, v.verdict, s)
        assert votes == v.votes_small_intestine and s == pytest.approx(v.patient_sum, abs=1e-6), name
    assert scanner(bare[:100])[1] > 0  # the tie case really has S on the small-intestine side
