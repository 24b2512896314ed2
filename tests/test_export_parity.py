"""Exported ONNX model vs the reference pipeline (PyTorch ResNet50 + scikit-learn), seeded random weights."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from netorigin.calibration.bands import calibrate_bands
from netorigin.export.embedder import build_embedder, embed_uint8
from netorigin.export.heads import fit_head, head_arrays
from netorigin.export.metadata import build_metadata
from netorigin.export.onnx_graph import MAX_IR_VERSION, attach_head, export_embedder
from netorigin.runtime.contract import load_contract, with_metadata
from netorigin.runtime.session import open_session
from netorigin.runtime.verdict import patient_verdict


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
    meta = build_metadata(info, arrays, bands, patches_per_case=100, cohort={"synthetic": True}, demo=True)
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    path.write_bytes(with_metadata(model.SerializeToString(), meta))
    test = np.concatenate([_patches(50, 3, False), _patches(50, 4, True)])
    return {"embedder": embedder, "pipeline": pipeline, "path": path, "test": test, "model": model}


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


def test_embedding_and_decision_parity_with_reference_pipeline(exported):
    test = exported["test"]
    reference_emb = embed_uint8(exported["embedder"], test)
    reference_dec = exported["pipeline"].decision_function(reference_emb.astype(np.float64))
    session = open_session(load_contract(exported["path"]), device="cpu")
    decision, embedding = session.run(test, with_embeddings=True)
    rel = np.abs(embedding - reference_emb).max() / np.abs(reference_emb).max()
    assert rel <= 1e-4
    assert np.abs(decision - reference_dec).max() <= 1e-4
    assert abs(float(np.sum(decision, dtype=np.float64)) - float(reference_dec.sum())) <= 1e-3
    assert np.array_equal(decision > 0, reference_dec > 0)
    assert np.std(reference_dec) > 0.05  # the comparison is not between constants
    ours = patient_verdict(decision, None)
    ref = patient_verdict(reference_dec, None)
    assert ours.verdict == ref.verdict and ours.votes_small_intestine == ref.votes_small_intestine


def test_bare_onnxruntime_and_json_recompute_the_verdict(exported):
    """What scanner software does without our code: onnxruntime + json only."""
    session = ort.InferenceSession(str(exported["path"]), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["netorigin.schema"] == 2
    n = meta["netorigin.case"]["patches_per_case"]
    decisions = session.run(["decision"], {"patches": exported["test"][:n]})[0]
    s = 0.0
    for d in decisions.astype(np.float64):
        s += float(d)
    votes = int((decisions > 0).sum())
    band = next(b for b in meta["netorigin.bands"] if b["c"] == meta["netorigin.default_confidence"])
    classes = meta["netorigin.classes"]
    if band["lower"] < s < band["upper"]:
        verdict = "uncertain"
    else:
        verdict = classes["1"] if 2 * votes > n else classes["0"]
    ours = patient_verdict(decisions, (band["lower"], band["upper"]))
    assert verdict == ours.verdict
    assert s == ours.patient_sum
