"""MRI cases for review and at scale: each group's occlusion map (what the class rests on), the case page that shows
the groups with their maps and probabilities, and an MRI batch on a Dask cluster giving the local run's reports."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from distributed import Client, LocalCluster

from netorigin.export.synthetic_mri import make_mri_cohort
from netorigin.runtime.batch.cluster import DaskMapper
from netorigin.runtime.mri.batch import read_mri_manifest, run_mri_batch
from netorigin.runtime.mri.occlusion import cell_edges, occluded_row, occlusion_maps
from netorigin.runtime.mri.predictor import MriCase, MriPredictor

from .helpers import run_cli
from .mri_cases import untrained_model

VOLATILE = ("created", "timings_s")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri-review")
    make_mri_cohort(root, {"cyst": 1, "hcc": 1, "metastasis": 2}, seed=11)
    return root


@pytest.fixture(scope="module")
def model_a(tmp_path_factory):
    """Model A (six sequences, no clinical data), untrained."""
    path = tmp_path_factory.mktemp("mri-a") / "a.onnx"
    untrained_model("A", path, seed=5)
    return path


def test_the_occlusion_map_peaks_on_the_cell_the_class_rests_on():
    """A stand-in model whose class-0 probability is the brightness of one square: blanking the cell that holds the
    square drops it by exactly that, blanking any other cell changes nothing."""
    images = np.full((2, 3, 64, 64), 0.5, dtype=np.float32)
    images[0, :, 40:48, 8:16] = 2.0  # inside cell (row 2, col 0) of a 4 x 4 grid (cells of 16 px)
    images[1, :, 0:8, 56:64] = 2.0  # inside cell (0, 3)

    def run(batch):
        p = batch[:, 1, 40:48, 8:16].mean(axis=(1, 2)) / 4 + batch[:, 1, 0:8, 56:64].mean(axis=(1, 2)) / 4
        return np.stack([p, 1 - p], axis=1)

    base = run(images)
    maps = occlusion_maps(run, images, base, target=0, grid=4)
    assert maps.shape == (2, 4, 4)
    assert np.unravel_index(np.argmax(maps[0]), (4, 4)) == (2, 0) and maps[0, 2, 0] == pytest.approx(0.5)
    assert np.unravel_index(np.argmax(maps[1]), (4, 4)) == (0, 3) and maps[1, 0, 3] == pytest.approx(0.5)
    assert np.count_nonzero(maps[0]) == 2  # cell (0, 3) holds group 0's background patch of the other square
    assert list(cell_edges(299, 8)) == [0, 37, 75, 112, 150, 187, 224, 262, 299]
    copies = occluded_row(images[0], 1, 4)
    assert copies.shape == (4, 3, 64, 64) and (copies[2, :, 16:32, 32:48] == 0).all()
    assert (copies[2, :, :16] == images[0, :, :16]).all()


def test_predict_out_writes_the_case_page_with_every_group_and_its_occlusion_map(cohort, model_a, tmp_path,
                                                                                   monkeypatch, capsys):
    code, stdout, err = run_cli(monkeypatch, capsys, "predict", cohort / "hcc-00", "-m", model_a, "--out",
                                tmp_path / "out", "--occlusion-grid", "3", "--json")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "hcc-00.json").read_text())
    assert report == {**json.loads(stdout), "created": report["created"], "timings_s": report["timings_s"]}
    assert report["occlusion"]["grid"] == 3 and report["occlusion"]["class"] == report["lesion_class"]
    assert "occlusion" in report["timings_s"]
    # each map is what the model says with that cell blanked, measured again here
    predictor = MriPredictor(model_a, device="cpu")
    groups = predictor.groups(MriCase.from_folder(cohort / "hcc-00"))
    target = report["classes"].index(report["lesion_class"])
    for g, group in enumerate(report["groups"]):
        again = predictor.run(occluded_row(groups.pixels[g], 1, 3), None)[:, target]
        drop = group["probabilities"][report["lesion_class"]] - again
        assert np.asarray(group["occlusion"]).shape == (3, 3)
        assert np.allclose(group["occlusion"][1], drop, atol=1e-5)
    page = (tmp_path / "out" / "hcc-00.html").read_text()
    assert f'data-class="{report["lesion_class"]}"' in page and "DEMO MODEL" in page
    assert len(re.findall(r'<div class="group" id="group-\d+" data-section="(\d+)"', page)) == len(report["groups"])
    assert [int(s) for s in re.findall(r'data-section="(\d+)"', page)] == [g["section"] for g in report["groups"]]
    assert page.count('class="occlusion" src="data:image/png;base64,') == len(report["groups"])
    assert page.count('class="t2" src="data:image/png;base64,') == len(report["groups"])
    assert "http://" not in page and "https://" not in page  # one file, nothing fetched

    code, _, err = run_cli(monkeypatch, capsys, "predict", cohort / "hcc-00", "-m", model_a, "--out",
                           tmp_path / "plain", "--occlusion-grid", "0")
    assert code == 0, err
    plain = json.loads((tmp_path / "plain" / "hcc-00.json").read_text())
    assert plain["occlusion"] is None and all("occlusion" not in g for g in plain["groups"])
    assert 'class="occlusion"' not in (tmp_path / "plain" / "hcc-00.html").read_text()
    code, _, err = run_cli(monkeypatch, capsys, "predict", cohort / "hcc-00", "-m", model_a, "--out",
                           tmp_path / "bad", "--roi", tmp_path / "missing.nii.gz")
    assert code != 0 and "region of interest file not found" in err and not (tmp_path / "bad").exists()
    code, _, err = run_cli(monkeypatch, capsys, "predict", cohort / "hcc-00", "-m", model_a, "--occlusion-grid", "3")
    assert code == 2 and "--occlusion-grid draws the case page: it needs --out DIR" in err
    code, _, err = run_cli(monkeypatch, capsys, "batch", cohort / "cohort.csv", "-m", model_a, "-o", tmp_path / "b",
                           "--confidence", "0.9", "--engine", "openvino")
    assert code == 2 and "--engine, --confidence: for slide models, not this MRI lesion model" in err


def _reports(folder):
    found = {}
    for path in sorted(folder.glob("*.json")):
        if path.name != "batch-summary.json":
            doc = json.loads(path.read_text())
            for key in VOLATILE:
                doc.pop(key)
            found[path.stem] = doc
    return found


def test_an_mri_batch_on_a_dask_cluster_gives_the_local_reports(cohort, model_a, tmp_path):
    predictor = MriPredictor(model_a, device="cpu")
    items = read_mri_manifest(cohort / "cohort.csv", predictor, None)
    local = run_mri_batch(predictor, items, tmp_path / "local", occlusion_grid=2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        remote = run_mri_batch(predictor, items, tmp_path / "dask", mapper=DaskMapper(client), occlusion_grid=2)
        assert [o.__dict__ for o in remote] == [o.__dict__ for o in local]
        assert _reports(tmp_path / "dask") == _reports(tmp_path / "local") and len(_reports(tmp_path / "local")) == 4
        assert len(list((tmp_path / "dask").glob("*.html"))) == 4
        summary = json.loads((tmp_path / "dask" / "batch-summary.json").read_text())
        assert summary["cluster"]["scheme"] == "tcp-loopback" and summary["counts"]["ok"] == 4
        rerun = run_mri_batch(predictor, items, tmp_path / "dask", mapper=DaskMapper(client), occlusion_grid=2)
        assert {o.status for o in rerun} == {"skipped"}
    regridded = run_mri_batch(predictor, items, tmp_path / "local", occlusion_grid=None)  # pages of another grid
    assert {o.status for o in regridded} == {"ok"}
    assert all(json.loads((tmp_path / "local" / f"{i.case.patient}.json").read_text())["occlusion"] is None
               for i in items)


def test_verify_replays_an_mri_report_from_moved_inputs_and_catches_edits(cohort, model_a, tmp_path, monkeypatch,
                                                                           capsys):
    case = tmp_path / "case"
    shutil.copytree(cohort / "metastasis-01", case)
    code, _, err = run_cli(monkeypatch, capsys, "predict", case, "-m", model_a, "--out", tmp_path / "out",
                           "--occlusion-grid", "2")
    assert code == 0, err
    report = tmp_path / "out" / "case.json"  # named after the case folder
    code, stdout, err = run_cli(monkeypatch, capsys, "verify", report, "-m", model_a)
    assert code == 0, err
    assert "reproduced bit for bit" in stdout and "Model A" in stdout
    moved = tmp_path / "archive" / "renamed"  # found by content, not by path
    moved.parent.mkdir()
    case.rename(moved)
    code, stdout, _ = run_cli(monkeypatch, capsys, "verify", report, "-m", model_a)
    assert code == 1 and "series t2: no folder where the report says" in stdout
    code, stdout, err = run_cli(monkeypatch, capsys, "verify", report, "-m", model_a, "--series", tmp_path / "archive")
    assert code == 0, stdout + err
    doc = json.loads(report.read_text())
    doc["groups"][0]["occlusion"][1][0] += 1e-6
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    code, stdout, _ = run_cli(monkeypatch, capsys, "verify", edited, "-m", model_a, "--series", tmp_path / "archive")
    assert code == 1 and "groups.0.occlusion.1.0: report" in stdout
    doc = json.loads(report.read_text())
    doc["lesion_class"] = next(c for c in doc["classes"] if c != doc["lesion_class"])
    edited.write_text(json.dumps(doc))
    code, stdout, _ = run_cli(monkeypatch, capsys, "verify", edited, "-m", model_a, "--series", tmp_path / "archive")
    assert code == 1 and "lesion_class: report" in stdout
    roi = next(moved.glob("roi-t2.*"))
    roi.write_bytes(roi.read_bytes() + b"\0")
    code, stdout, _ = run_cli(monkeypatch, capsys, "verify", report, "-m", model_a, "--series", tmp_path / "archive")
    assert code == 1 and "region of interest: no file in" in stdout
    other_model = tmp_path / "other.onnx"
    untrained_model("A", other_model, seed=6)
    code, stdout, _ = run_cli(monkeypatch, capsys, "verify", report, "-m", other_model)
    assert code == 1 and "model: another model (graph)" in stdout
    code, _, err = run_cli(monkeypatch, capsys, "verify", report, "-m", model_a, "--slides", tmp_path)
    assert code == 2 and "--slides and --annotations are for slide reports" in err
    (tmp_path / "broken.json").write_text(json.dumps({**json.loads(report.read_text()), "inputs": {"series": []}}))
    code, _, err = run_cli(monkeypatch, capsys, "verify", tmp_path / "broken.json", "-m", model_a)
    assert code == 2 and "not a complete netorigin case report" in err and len(err.strip().splitlines()) == 1
