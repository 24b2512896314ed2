"""Every kind of bad input gets one line naming the file and the problem, a non-zero exit, no partial output."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from importlib import metadata

import numpy as np
import onnx
import onnxruntime
import pytest
import tifffile
from onnx import TensorProto, helper

from netorigin.runtime.model.contract import PREFIX, load_contract, with_metadata
from netorigin.runtime.model.protobuf_fields import read_metadata, replace_metadata
from netorigin.runtime.model.signing import generate_keypair, sign_model

from .helpers import run_cli

SQUARE = {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
          "geometry": {"type": "Polygon", "coordinates": [[[800, 800], [2400, 800], [2400, 2400], [800, 2400],
                                                           [800, 800]]]}}


def _flat_tiff(path, mpp=None, levels=(1,)):
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (3200, 3200, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tif:
        for i, ds in enumerate(levels):
            kwargs = dict(tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None,
                          subfiletype=0 if i == 0 else 1)
            if mpp:
                kwargs.update(resolution=(1e4 / (mpp * ds),) * 2, resolutionunit="CENTIMETER")
            tif.write(base[::ds, ::ds], **kwargs)
    return path


def _corrupt_tiles(src, dst, page_index=1):
    shutil.copy(src, dst)
    with tifffile.TiffFile(dst) as tif:
        page = tif.pages[page_index]
        offsets, counts = page.dataoffsets, page.databytecounts
    data = bytearray(dst.read_bytes())
    for off, n in zip(offsets, counts):
        data[off:off + min(n, 64)] = b"\x00" * min(n, 64)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def bad(tmp_path_factory, slides, tiny_model):
    d = tmp_path_factory.mktemp("bad")
    good = slides["svs20x"]
    files = {"good_slide": good.slide, "good_ann": good.annotations, "model": tiny_model}
    (d / "empty.svs").write_bytes(b"")
    files["empty_slide"] = d / "empty.svs"
    raw = good.slide.read_bytes()
    (d / "truncated.svs").write_bytes(raw[: len(raw) // 3])
    files["truncated_slide"] = d / "truncated.svs"
    (d / "text.svs").write_text("this is not a slide\n")
    files["text_slide"] = d / "text.svs"
    files["no_mpp"] = _flat_tiff(d / "nompp.tif", mpp=None, levels=(1, 4))
    files["bad_tiles"] = _corrupt_tiles(good.slide, d / "badtiles.svs")
    for name, text in {"ann_invalid": "{oops", "ann_shape": '{"type": "Point", "coordinates": [0, 0]}',
                       "ann_empty": "", "ann_outside": json.dumps([dict(SQUARE, geometry={
                           "type": "Polygon", "coordinates": [[[9e5, 9e5], [9e5 + 10, 9e5], [9e5, 9e5 + 10],
                                                                [9e5, 9e5]]]})]),
                       "ann_no_tumour": json.dumps([dict(SQUARE, properties={"classification": {"name": "Stroma"}})]),
                       "ann_bowtie": json.dumps([dict(SQUARE, geometry={"type": "Polygon", "coordinates": [
                           [[0, 0], [100, 100], [100, 0], [100, 100], [0, 0]]]})]),
                       "ann_glass": json.dumps([dict(SQUARE, geometry={"type": "Polygon", "coordinates": [
                           [[5, 5], [60, 5], [60, 60], [5, 60], [5, 5]]]})])}.items():
        (d / f"{name}.geojson").write_text(text)
        files[name] = d / f"{name}.geojson"
    model_bytes = tiny_model.read_bytes()
    (d / "truncated.onnx").write_bytes(model_bytes[: len(model_bytes) // 2])
    (d / "notonnx.onnx").write_text("hello, I am not a model\n" * 50)
    (d / "nometa.onnx").write_bytes(replace_metadata(model_bytes, {}))
    meta = read_metadata(model_bytes)
    meta[PREFIX + "schema"] = "99"
    (d / "schema99.onnx").write_bytes(replace_metadata(model_bytes, meta))
    tampered = bytearray(model_bytes)
    idx = len(tampered) // 2
    tampered[idx] = (tampered[idx] + 1) % 256
    (d / "tampered.onnx").write_bytes(bytes(tampered))
    for name in ("truncated", "notonnx", "nometa", "schema99", "tampered"):
        files[f"model_{name}"] = d / f"{name}.onnx"
    files.update(missing_slide=d / "nope.svs", missing_ann=d / "nope.geojson", missing_model=d / "nope.onnx")
    files.update(_worse_slides(d), **_worse_annotations(d), **_worse_models(d, tiny_model))
    return files


def _tissue_tiff(path, size, mpp):
    """A one-level tiled TIFF of pink tissue, `size` px square, at `mpp` (72 dpi = 352.8 um/px)."""
    rng = np.random.default_rng(1)
    pixels = np.clip(np.array([200, 120, 170]) + rng.integers(-30, 30, (size, size, 1)), 0, 255).astype(np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(pixels, tile=(16, 16), photometric="rgb", metadata=None,
                  resolution=(1e4 / mpp,) * 2, resolutionunit="CENTIMETER")
    return path


def _worse_slides(d):
    (d / "folder.svs").mkdir()
    return {"editor_72dpi": _tissue_tiff(d / "editor.tif", 304, 25_400 / 72),
            "smaller_than_fov": _tissue_tiff(d / "speck.tif", 16, 0.5), "folder_slide": d / "folder.svs"}


def _feature(coordinates, object_type="annotation", geometry_type="Polygon"):
    return {"type": "Feature", "properties": {"objectType": object_type, "classification": {"name": "Tumor"}},
            "geometry": {"type": geometry_type, "coordinates": coordinates}}


def _worse_annotations(d):
    ring = SQUARE["geometry"]["coordinates"][0]
    texts = {
        "ann_nan": json.dumps([_feature([[[800, 800], [float("nan"), 800], [2400, 2400], [800, 800]]])]),
        "ann_huge": json.dumps([_feature([[[0, 0], [1e300, 0], [1e300, 1e300], [0, 0]]])]),
        "ann_deep": "[" * 50_000 + "]" * 50_000,
        "ann_bigint": '{"type": "FeatureCollection", "n": ' + "7" * 5_000 + ', "features": []}',
        "ann_cells_only": json.dumps([_feature([ring], object_type="cell")] * 3),
        "ann_lines_only": json.dumps([_feature(ring, geometry_type="LineString")]),
        "ann_sliver": json.dumps([_feature([[[0, 0], [3000, 3000.0001], [3000, 3000], [0, 0]]])]),
        "ann_newline_class": json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Str\noma"}},
                                          "geometry": SQUARE["geometry"]}]),
    }
    files = {}
    for name, text in texts.items():
        (d / f"{name}.geojson").write_text(text)
        files[name] = d / f"{name}.geojson"
    (d / "latin1.geojson").write_bytes(json.dumps([SQUARE]).replace("Tumor", "Tum\xf6r").encode("latin-1"))
    files["ann_latin1"] = d / "latin1.geojson"
    (d / "folder.geojson").mkdir()
    files["ann_folder"] = d / "folder.geojson"
    return files


def _worse_models(d, tiny_model):
    model_bytes = tiny_model.read_bytes()
    meta = read_metadata(model_bytes)
    contract = load_contract(tiny_model)
    edits = {
        # bands moved without netorigin: the graph digest still matches, the verdict digest does not
        "bands_edited": meta | {PREFIX + "bands": json.dumps([dict(b, upper=b["upper"] + 5) for b in
                                                              contract.meta[PREFIX + "bands"]])},
        "schema1": meta | {PREFIX + "schema": "1"},
        "nan_meta": meta | {PREFIX + "default_confidence": "NaN"},
    }
    files = {}
    for name, props in edits.items():
        (d / f"{name}.onnx").write_bytes(replace_metadata(model_bytes, props))
        files[f"model_{name}"] = d / f"{name}.onnx"
    unstored = with_metadata(model_bytes, contract.meta | {PREFIX + "default_confidence": 0.3})
    (d / "unstored.onnx").write_bytes(unstored)
    files["model_unstored_default"] = d / "unstored.onnx"
    generate_keypair(d / "lab.key", d / "lab.pub")
    files.update(private_key=d / "lab.key", public_key=d / "lab.pub")
    signed = load_contract(tiny_model)
    signed_bytes = sign_model(signed, d / "lab.key")
    signature = read_metadata(signed_bytes)[PREFIX + "signature"]
    edited = with_metadata(model_bytes, contract.meta | {PREFIX + "record": dict(contract.meta[PREFIX + "record"],
                                                                                  demo=False)})
    (d / "signed_edited.onnx").write_bytes(replace_metadata(edited, read_metadata(edited) |
                                                            {PREFIX + "signature": signature}))
    files["model_signed_edited"] = d / "signed_edited.onnx"
    (d / "folder.onnx").mkdir()
    files["model_folder"] = d / "folder.onnx"
    return files


def _predict_args(files, slide="good_slide", ann="good_ann", model="model", extra=()):
    args = ["predict", files[slide], "-m", files[model], "--device", "cpu"]
    if ann:
        args += ["-a", files[ann]]
    return args + [files.get(a, a) for a in extra]  # an extra naming a fixture file is replaced by its path


CASES = {
    # kind: (predict arguments builder, expected file key, expected problem fragment)
    "zero-byte slide": (dict(slide="empty_slide"), "empty_slide", "empty (0 bytes)"),
    "truncated TIFF": (dict(slide="truncated_slide", ann=None), "truncated_slide", "damaged or truncated"),
    "text file named .svs": (dict(slide="text_slide", ann=None), "text_slide", "not a slide format"),
    "slide without MPP": (dict(slide="no_mpp", ann=None), "no_mpp", "--mpp"),
    "tiles fail to decode": (dict(slide="bad_tiles"), "bad_tiles", "cannot be decoded"),
    "annotations invalid JSON": (dict(ann="ann_invalid"), "ann_invalid", "not valid JSON"),
    "annotations wrong shape": (dict(ann="ann_shape"), "ann_shape", "not QuPath GeoJSON"),
    "annotations empty file": (dict(ann="ann_empty"), "ann_empty", "annotation file is empty"),
    "annotations outside slide": (dict(ann="ann_outside"), "ann_outside", "outside the slide"),
    "annotations without tumour class": (dict(ann="ann_no_tumour"), "ann_no_tumour",
                                         "no annotation object of class Tumor"),
    "annotations self-intersecting, no area": (dict(ann="ann_bowtie"), "ann_bowtie", "cannot be repaired"),
    "model truncated": (dict(model="model_truncated"), "model_truncated", "truncated or damaged"),
    "model not ONNX": (dict(model="model_notonnx"), "model_notonnx", "not an ONNX model"),
    "model without netorigin metadata": (dict(model="model_nometa"), "model_nometa", "not a netorigin model"),
    "model unknown schema": (dict(model="model_schema99"), "model_schema99", "unknown metadata schema"),
    "model weights changed": (dict(model="model_tampered"), "model_tampered", "hash mismatch"),
    "slide file missing": (dict(slide="missing_slide"), "missing_slide", "slide file not found"),
    "annotation file missing": (dict(ann="missing_ann"), "missing_ann", "annotation file not found"),
    "model file missing": (dict(model="missing_model"), "missing_model", "model file not found"),
    "image at 72 dpi (not a scan)": (dict(slide="editor_72dpi", ann=None), "editor_72dpi",
                                     "outside what slide scanners produce"),
    "slide coarser than the model needs": (dict(slide="good_slide", extra=("--force-mpp", "3.0")), "good_slide",
                                           "the model needs 2.219 um per pixel or finer"),
    "slide smaller than one field of view": (dict(slide="smaller_than_fov", ann=None), "smaller_than_fov",
                                             "smaller than one 497 um field of view"),
    "slide path is a folder": (dict(slide="folder_slide", ann=None), "folder_slide",
                               "folder holds no DICOM whole-slide image"),
    "annotations with NaN coordinates": (dict(ann="ann_nan"), "ann_nan", "not valid JSON (NaN is not a JSON"),
    "annotations with 1e300 coordinates": (dict(ann="ann_huge"), "ann_huge", "coordinates beyond 1e+09 px"),
    "annotations nested 50000 deep": (dict(ann="ann_deep"), "ann_deep", "nested too deeply"),
    "annotations with a 5000-digit number": (dict(ann="ann_bigint"), "ann_bigint", "not valid JSON"),
    "annotations holding only cells": (dict(ann="ann_cells_only"), "ann_cells_only",
                                       "no annotation object of class Tumor"),
    "annotations holding only lines": (dict(ann="ann_lines_only"), "ann_lines_only", "found: no area objects"),
    "annotations with a sliver polygon": (dict(ann="ann_sliver"), "ann_sliver", "too thin to sample"),
    "annotations with a newline in a class name": (dict(ann="ann_newline_class"), "ann_newline_class",
                                                   "(found: Str oma)"),
    "annotations not UTF-8": (dict(ann="ann_latin1"), "ann_latin1", "not valid JSON"),
    "annotation path is a folder": (dict(ann="ann_folder"), "ann_folder", "is a directory"),
    "model bands edited without netorigin": (dict(model="model_bands_edited"), "model_bands_edited",
                                             "verdict digest mismatch"),
    "model of schema 1": (dict(model="model_schema1"), "model_schema1", "re-export"),
    "model metadata with NaN": (dict(model="model_nan_meta"), "model_nan_meta", "NaN is not a JSON number"),
    "model default confidence not stored": (dict(model="model_unstored_default"), "model_unstored_default",
                                            "not one of the stored band levels"),
    "model changed after signing": (dict(model="model_signed_edited"), "model_signed_edited",
                                    "changed after signing"),
    "unsigned model where a key is trusted": (dict(extra=("--trusted-key", "public_key")), "model",
                                              "model is unsigned"),
    "trusted key file is not a key": (dict(extra=("--trusted-key", "good_ann")), "good_ann", "not a PEM public key"),
    "model path is a folder": (dict(model="model_folder"), "model_folder", "is a directory"),
    "case id that climbs out of the folder": (dict(extra=("--case-id", "../../x")), "../../x",
                                              "is not usable as a file name"),
    "confidence outside 0..1": (dict(extra=("--confidence", "1.5")), "1.5", "is not between 0 and 1"),
    "case id of the batch index": (dict(extra=("--case-id", "index")), "index", "is reserved"),
    "pyramid level that does not exist": (dict(extra=("--level", "7")), "good_slide", "level 7 does not exist"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_input_one_line_error(monkeypatch, capsys, bad, kind, tmp_path):
    kwargs, key, fragment = CASES[kind]
    out = tmp_path / "out"
    code, stdout, err = run_cli(monkeypatch, capsys, *_predict_args(bad, **kwargs), "--out", out)
    lines = err.strip().splitlines()
    assert code != 0, stdout
    assert stdout == ""  # never a verdict
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(bad.get(key, key)) in lines[0] and fragment in lines[0]
    left = sorted(out.rglob("*")) if out.exists() else []
    assert left == []  # nothing partial (the folder itself may have been created before the check)


def test_mpp_override_rescues_a_slide_without_mpp(monkeypatch, capsys, bad):
    # 3200 px at 2.0 um/px: the flat level is already coarse enough, so the read is cheap.
    args = _predict_args(bad, slide="no_mpp", ann=None) + ["--mpp", "2.0"]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    # A verdict was given (the summary's first line names case and verdict) on the detected tissue.
    assert re.search(r"^case nompp: (PANCREAS|SMALL INTESTINE|UNCERTAIN)$", out, re.M), out
    assert "note: no annotations: tissue detection was used" in out


def test_insufficient_tissue_is_reported_never_verdicted(monkeypatch, capsys, bad, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, *_predict_args(bad, ann="ann_glass"), "--out", tmp_path)
    assert code == 3 and out == "" and "insufficient tissue: 0 of 20 patches" in err
    case = bad["good_slide"].stem  # the case id defaults to the slide's name
    names = sorted(p.name for p in tmp_path.iterdir())
    assert f"{case}.json" in names and all(name.startswith(f"{case}.") for name in names), names
    report = json.loads((tmp_path / f"{case}.json").read_text())
    assert report["case"] == case
    assert report["status"] == "insufficient_tissue" and report["verdict"] is None
    assert report["patches_possible"] == 0 and report["patches_required"] == 20


def test_insufficient_tissue_counts_patches_for_the_whole_case(monkeypatch, capsys, bad, tmp_path):
    """Two slides, the second all glass: the report counts the case (10 of the model's 20), not the slide."""
    args = ["predict", bad["good_slide"], bad["good_slide"], "-a", bad["good_ann"], "-a", bad["ann_glass"],
            "--specimen", "A", "--specimen", "B", "-m", bad["model"], "--device", "cpu", "--case-id", "two",
            "--out", tmp_path]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 3 and out == ""
    report = json.loads((tmp_path / "two.json").read_text())
    assert (report["patches_possible"], report["patches_required"]) == (10, 20)
    assert "(10 of 20 patches possible)" in (tmp_path / "two.html").read_text()


@pytest.mark.parametrize("extra, fragment, names_model", [
    # a level this model does not store: the error names the model file and the levels it does store
    (("--confidence", "0.3"), "confidence '0.3' is not a stored level (stored: ", True),
    # not a number at all: a usage problem, whatever the model
    (("--confidence", "abc"), "confidence 'abc' is not a number or a fraction k/o", False),
])
def test_bad_options(monkeypatch, capsys, bad, extra, fragment, names_model):
    code, out, err = run_cli(monkeypatch, capsys, *_predict_args(bad), *extra)
    lines = err.strip().splitlines()
    assert code == 1 and out == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert (str(bad["model"]) in lines[0]) == names_model, lines[0]


def _cuda_state() -> str:
    """What `--device cuda` can do on this host, found with bare onnxruntime (not netorigin's code):
    'absent' (no CUDA provider in this build), 'mixed' (onnxruntime and onnxruntime-gpu both installed),
    'broken' (the provider is listed but a session falls back to the CPU) or 'works'."""
    installed = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed.append(metadata.version(name))
        except metadata.PackageNotFoundError:
            pass
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "absent"
    if len(installed) > 1:
        return "mixed"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    probe.ir_version = 8
    try:
        session = onnxruntime.InferenceSession(probe.SerializeToString(),
                                               providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    except Exception:  # any failure to start CUDA counts as broken
        return "broken"
    return "works" if session.get_providers()[0] == "CUDAExecutionProvider" else "broken"


CUDA_ERRORS = {
    "absent": "error: --device cuda: this onnxruntime build has no CUDA provider",
    "mixed": "error: --device cuda: both onnxruntime and onnxruntime-gpu are installed",
    "broken": "error: --device cuda: the CUDA provider failed to start",
}


def test_cuda_requested_runs_on_cuda_or_is_an_error_never_a_cpu_run(monkeypatch, capsys, bad, tmp_path):
    """On a GPU host `--device cuda` runs on CUDA; anywhere else it is a one-line error naming why, no verdict."""
    state = _cuda_state()
    args = [a for a in _predict_args(bad) if a not in ("cpu", "--device")] + ["--device", "cuda"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--json", "--out", tmp_path / "cuda")
    if state == "works":
        assert code == 0, err
        report = json.loads(out)
        assert report["provider"] == "CUDAExecutionProvider" and report["status"] == "ok"
        # Same case on the CPU: the same votes and verdict, S equal to float32 accuracy.
        code, cpu_out, err = run_cli(monkeypatch, capsys, *_predict_args(bad), "--json")
        assert code == 0, err
        cpu = json.loads(cpu_out)
        assert (report["verdict"], report["votes"]) == (cpu["verdict"], cpu["votes"])
        assert report["patient_sum"] == pytest.approx(cpu["patient_sum"], abs=1e-3)
    else:
        lines = err.strip().splitlines()
        assert code == 1 and out == ""
        assert len(lines) == 1 and lines[0].startswith(CUDA_ERRORS[state]), (state, err)
        assert not list((tmp_path / "cuda").glob("*.json"))


def test_unwritable_output_folder(monkeypatch, capsys, bad, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(monkeypatch, capsys, *_predict_args(bad), "--out", blocker / "sub")
    assert code != 0 and "not writable" in err and str(blocker / "sub") in err


@pytest.mark.parametrize("content, fragment", [
    ("case,slide\nc1,a.svs\nc1,a.svs\n", "duplicate row"),
    ("patient,file\nc1,a.svs\n", "bad columns"),
    ("case,slide\n", "no rows"),
    ("case,slide\n../x,a.svs\n", "case id"),
])
def test_bad_manifests(monkeypatch, capsys, bad, tmp_path, content, fragment):
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    code, _, err = run_cli(monkeypatch, capsys, "batch", manifest, "-m", bad["model"], "-o", tmp_path / "o")
    assert code != 0 and fragment in err and str(manifest) in err
    assert not (tmp_path / "o").exists()


def test_model_errors_from_the_contract_loader(bad):
    from netorigin.runtime.errors import ModelError

    for key in ("model_truncated", "model_notonnx", "model_nometa", "model_schema99", "model_tampered"):
        fragment = CASES[next(kind for kind, case in CASES.items() if case[1] == key)][2]
        with pytest.raises(ModelError, match=re.escape(fragment)) as exc:
            load_contract(bad[key])
        assert str(bad[key]) in str(exc.value)
    # The good model loads, and its recorded graph hash is the SHA-256 of the model without its metadata,
    # computed here with the onnx library alone.
    contract = load_contract(bad["model"])
    bare = onnx.load_from_string(bad["model"].read_bytes())
    del bare.metadata_props[:]
    assert contract.sha256 == hashlib.sha256(bare.SerializeToString()).hexdigest()
    assert contract.model_bytes == bad["model"].read_bytes()
