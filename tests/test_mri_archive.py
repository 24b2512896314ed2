"""MRI cases kept in a DICOM archive (a real Orthanc with its DICOMweb plugin on 127.0.0.1): series and the DICOM SEG
region named by their series URLs in a batch manifest give the local case's groups and probabilities; an archived
report replays; an input the archive does not hold, or an archive that is down, fails that case alone in one line."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from netorigin.export.synthetic_mri import make_mri_cohort
from netorigin.runtime.mri.protocol import UNENHANCED

from .helpers import run_cli
from .mri_cases import untrained_model, write_segmentation
from .pacs import free_port, upload


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri-archive")
    make_mri_cohort(root, {"hcc": 1, "metastasis": 1}, seed=13)
    return root


@pytest.fixture(scope="module")
def model_d(tmp_path_factory):
    """Model D (the three unenhanced sequences, benign vs malignant), untrained."""
    path = tmp_path_factory.mktemp("mri-d") / "d.onnx"
    untrained_model("D", path, seed=2)
    return path


def series_url(pacs, folder):
    first = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    return f"{pacs['dicomweb']}/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"


def archive_case(pacs, case, tmp_path):
    """The case's unenhanced series and a SEG of its region into the archive; their URLs."""
    urls = {}
    for sequence in UNENHANCED:
        upload(pacs["rest"], case / sequence)
        urls[sequence] = series_url(pacs, case / sequence)
    seg = tmp_path / f"{case.name}-seg"
    seg.mkdir()
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "roi-t2.nii.gz"))) != 0
    write_segmentation(case / "t2", mask, seg / "roi.dcm")
    upload(pacs["rest"], seg)
    urls["roi"] = series_url(pacs, seg)
    return urls


def test_archived_series_and_seg_region_give_the_local_result_and_replay(cohort, model_d, pacs, tmp_path,
                                                                          monkeypatch, capsys):
    urls = {p: archive_case(pacs, cohort / p, tmp_path) for p in ("hcc-00", "metastasis-00")}
    missing = dict(urls["metastasis-00"], t2=urls["metastasis-00"]["t2"][:-2] + "99")
    manifest = tmp_path / "archived.csv"
    columns = ["patient", *UNENHANCED, "roi"]
    rows = [["hcc-00", *(urls["hcc-00"][c] for c in columns[1:])],
            ["metastasis-00", *(urls["metastasis-00"][c] for c in columns[1:])],
            ["gone-00", *(missing[c] for c in columns[1:])]]
    manifest.write_text("\n".join(",".join(r) for r in [columns, *rows]) + "\n")
    code, stdout, err = run_cli(monkeypatch, capsys, "batch", manifest, "-m", model_d, "-o", tmp_path / "archived",
                                "--occlusion-grid", "0")
    assert code == 1 and "2 ok" in stdout and "1 failed" in stdout
    assert "gone-00" in err and "no such study or series (HTTP 404)" in err
    assert not (tmp_path / "archived" / "gone-00.json").exists()
    for patient in ("hcc-00", "metastasis-00"):
        code, stdout, err = run_cli(monkeypatch, capsys, "predict", cohort / patient, "-m", model_d, "--json")
        assert code == 0, err
        local = json.loads(stdout)
        archived = json.loads((tmp_path / "archived" / f"{patient}.json").read_text())
        assert archived["groups"] == local["groups"] and archived["lesion_class"] == local["lesion_class"]
        assert [s["path"] for s in archived["inputs"]["series"]] == [urls[patient][s] for s in UNENHANCED]
        assert archived["inputs"]["roi"]["path"] == urls[patient]["roi"]
        assert [s["files"] for s in archived["inputs"]["series"]] == [s["files"] for s in local["inputs"]["series"]]
    report = tmp_path / "archived" / "hcc-00.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "verify", report, "-m", model_d)
    assert code == 0, stdout + err
    one = tmp_path / "one.csv"  # predict takes an archived case as a one-row manifest
    one.write_text("\n".join(",".join(r) for r in [columns, rows[0]]) + "\n")
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", one, "-m", model_d, "--json")
    assert code == 0, err
    assert json.loads(stdout)["groups"] == json.loads(report.read_text())["groups"]
    code, _, err = run_cli(monkeypatch, capsys, "predict", manifest, "-m", model_d)
    assert code != 0 and "predict takes one case: this manifest has 3 rows (use batch)" in err
    code, stdout, _ = run_cli(monkeypatch, capsys, "batch", manifest, "-m", model_d, "-o", tmp_path / "archived",
                              "--occlusion-grid", "0")
    assert "0 ok, 2 skipped" in stdout  # resumed: the archive still holds the same instances

    down = tmp_path / "down.csv"
    port = free_port()  # nothing listens there
    down.write_text(manifest.read_text().replace(pacs["rest"], f"http://127.0.0.1:{port}"))
    code, stdout, err = run_cli(monkeypatch, capsys, "batch", down, "-m", model_d, "-o", tmp_path / "down",
                                "--occlusion-grid", "0")
    assert code == 1 and "0 ok" in stdout and "3 failed" in stdout
    assert err.count("the DICOMweb server cannot be reached") == 3
    assert np.all([not p.name.endswith(".json") or p.name == "batch-summary.json"
                   for p in (tmp_path / "down").iterdir()])
