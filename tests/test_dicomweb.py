"""A slide in a real PACS (Orthanc over DICOMweb on 127.0.0.1): predicted by its series URL, read frame by frame,
the DICOM results stored back into its study and found there; what goes wrong is one line, nothing written, nothing
stored."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading

import highdicom as hd
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.data import get_testdata_file

from netorigin.runtime.dicom import dicomweb
from netorigin.runtime.dicom.dicom_results import LOCAL_CODES

from .dicom_slides import volume_instances
from .helpers import run_cli
from .pacs import REFUSE_RESULTS, free_port, orthanc_file, orthanc_instances, series_count, start_orthanc, upload


@pytest.fixture(scope="module")
def archived(pacs, dicom_slides):
    """The 20x DICOM test slide uploaded to the PACS; its series URL."""
    upload(pacs["rest"], dicom_slides["svs20x"])
    _, header = volume_instances(dicom_slides["svs20x"])[0]
    return (f"{pacs['dicomweb']}/studies/{header.StudyInstanceUID}/series/{header.SeriesInstanceUID}",
            header.StudyInstanceUID)


def predict(monkeypatch, capsys, tiny_model, slide, *extra):
    return run_cli(monkeypatch, capsys, "predict", slide, "-m", tiny_model, "--device", "cpu", "--json", *extra)


def test_a_slide_in_the_pacs_gives_the_local_verdict_and_its_results_are_stored_back(
        monkeypatch, capsys, tiny_model, slides, dicom_slides, pacs, archived, tmp_path):
    url, study = archived
    annotations = slides["svs20x"].annotations
    code, out, err = predict(monkeypatch, capsys, tiny_model, dicom_slides["svs20x"], "-a", annotations)
    assert code == 0, err
    local = json.loads(out)
    code, out, err = predict(monkeypatch, capsys, tiny_model, url, "-a", annotations, "--out", tmp_path,
                             "--case-id", "web", "--store")
    assert code == 0, err
    remote = json.loads(out)
    # the same frames, decoded the same: the same patches, the same S to the last bit
    assert remote["patient_sum"] == local["patient_sum"] and remote["patches"] == local["patches"]
    assert remote["slides"][0]["fingerprint"]["path"] == url and remote["slides"][0]["fingerprint"]["bytes"] is None

    written = json.loads((tmp_path / "web.json").read_text())["dicom_results"]
    assert written["stored_to"] == pacs["dicomweb"]
    # found through Orthanc's own REST API (not the DICOMweb the results went in by), read back with highdicom
    stored = orthanc_instances(pacs["rest"], study)
    assert stored[written["sr"]["sop_instance_uid"]]["Modality"] == "SR"
    assert stored[written["annotations"][0]["sop_instance_uid"]]["Modality"] == "ANN"
    sr = hd.sr.srread(io.BytesIO(orthanc_file(pacs["rest"], stored[written["sr"]["sop_instance_uid"]]["ID"])))
    group = sr.content.get_image_measurement_groups()[0]
    values = {m.name.value: m.value for m in group.get_measurements()}
    assert values[LOCAL_CODES["s"][0]] == remote["patient_sum"]
    annotations = hd.ann.annread(io.BytesIO(orthanc_file(
        pacs["rest"], stored[written["annotations"][0]["sop_instance_uid"]]["ID"])))
    assert len(annotations.get_annotation_groups()[1].get_graphic_data(
        coordinate_type=annotations.AnnotationCoordinateType)) == len(remote["patches"])


def test_a_series_the_pacs_does_not_hold_is_one_line_and_nothing_is_written_or_stored(
        monkeypatch, capsys, tiny_model, pacs, archived, tmp_path):
    url, _ = archived
    before = series_count(pacs["rest"])
    missing = url.rsplit("/", 1)[0] + "/1.2.3.4"
    code, out, err = predict(monkeypatch, capsys, tiny_model, missing, "--out", tmp_path / "out", "--store")
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {missing}: the DICOMweb server holds no instance of this study and series"]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert series_count(pacs["rest"]) == before


def test_a_server_that_is_down_is_one_line(monkeypatch, capsys, tiny_model, archived, tmp_path):
    url, _ = archived
    down = url.replace(url.split("/")[2], f"127.0.0.1:{free_port()}")
    code, out, err = predict(monkeypatch, capsys, tiny_model, down, "--out", tmp_path / "out", "--store")
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {down}: the DICOMweb server cannot be reached"]
    assert list((tmp_path / "out").iterdir()) == []


def test_a_server_that_never_answers_times_out_in_one_line(monkeypatch, capsys, tiny_model, archived, tmp_path):
    """A listener that accepts and says nothing (a hung archive): the request gives up after the time-out."""
    url, _ = archived
    monkeypatch.setattr(dicomweb, "TIMEOUT_S", 1.0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    slow = url.replace(url.split("/")[2], f"127.0.0.1:{listener.getsockname()[1]}")
    try:
        code, out, err = predict(monkeypatch, capsys, tiny_model, slow, "--out", tmp_path / "out", "--store")
    finally:
        listener.close()
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {slow}: the DICOMweb server did not answer within 1 s"]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("url, problem", [
    ("http://127.0.0.1:1/dicom-web/studies/1.2/instances", "not a DICOMweb series URL"),
])
def test_a_url_that_names_no_series_is_one_line(monkeypatch, capsys, tiny_model, url, problem):
    code, out, err = predict(monkeypatch, capsys, tiny_model, url)
    assert code == 1 and out == "" and err.splitlines()[0].startswith(f"error: {url}: {problem}")


def test_store_needs_slides_from_dicomweb(monkeypatch, capsys, tiny_model, slides, tmp_path):
    code, out, err = predict(monkeypatch, capsys, tiny_model, slides["svs20x"].slide, "--out", tmp_path, "--store")
    assert code == 2 and out == ""
    assert "--store needs every slide given by its DICOMweb series URL" in err


def test_a_report_of_an_archived_slide_is_verified_against_the_archive(monkeypatch, capsys, tiny_model, slides,
                                                                       archived, tmp_path):
    url, _ = archived
    code, _, err = predict(monkeypatch, capsys, tiny_model, url, "-a", slides["svs20x"].annotations, "--out",
                           tmp_path, "--case-id", "audit")
    assert code == 0, err
    shutil.copy(slides["svs20x"].annotations, tmp_path / "a.geojson")
    code, out, _ = run_cli(monkeypatch, capsys, "verify", tmp_path / "audit.json", "-m", tiny_model, "--annotations",
                           tmp_path)
    assert code == 0, out
    assert f"inputs: {url}" in out


def test_a_batch_of_archived_slides_stores_each_case_back(monkeypatch, capsys, tiny_model, slides, pacs, archived,
                                                          tmp_path):
    url, study = archived
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case,slide,annotations\nb1,{url},{slides['svs20x'].annotations}\n")
    code, _, err = run_cli(monkeypatch, capsys, "batch", manifest, "-m", tiny_model, "--device", "cpu", "-o",
                           tmp_path / "out", "--store")
    assert code == 0, err
    written = json.loads((tmp_path / "out" / "b1.json").read_text())["dicom_results"]
    stored = {s["0020000E"]["Value"][0] for s in DICOMwebClient(pacs["dicomweb"]).search_for_series(study)}
    assert {written["sr"]["series_instance_uid"], written["annotations"][0]["series_instance_uid"]} <= stored


def test_a_store_the_archive_refuses_fails_the_case_in_one_line_and_keeps_the_local_files(
        monkeypatch, capsys, tiny_model, slides, dicom_slides, tmp_path):
    with start_orthanc(tmp_path / "strict", lua=REFUSE_RESULTS) as strict:
        upload(strict["rest"], dicom_slides["svs20x"])
        _, header = volume_instances(dicom_slides["svs20x"])[0]
        url = f"{strict['dicomweb']}/studies/{header.StudyInstanceUID}/series/{header.SeriesInstanceUID}"
        before = series_count(strict["rest"])
        code, out, err = predict(monkeypatch, capsys, tiny_model, url, "-a", slides["svs20x"].annotations,
                                 "--out", tmp_path / "out", "--case-id", "refused", "--store")
        assert series_count(strict["rest"]) == before
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1
    assert err.splitlines() == [f"error: {strict['dicomweb']}: storing the DICOM results failed: the server does "
                                "not hold 2 of the 2 objects sent (refused or filtered out)"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["refused.slide0.ann.dcm", "refused.sr.dcm"]


def test_a_series_that_is_not_a_slide_is_named_as_what_it_is(monkeypatch, capsys, tiny_model, pacs, tmp_path):
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    folder = tmp_path / "ct"
    folder.mkdir()
    ct.save_as(folder / "ct.dcm")
    upload(pacs["rest"], folder)
    url = f"{pacs['dicomweb']}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
    code, out, err = predict(monkeypatch, capsys, tiny_model, url)
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {url}: the series is not a whole-slide image (it holds CT Image Storage)"]
