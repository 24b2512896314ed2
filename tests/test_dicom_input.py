"""DICOM whole-slide images in: a folder of one slide's instances or one instance file (written by wsidicomizer,
not by netorigin), what is refused in one line, and a converter's short frames."""

from __future__ import annotations

import json
import shutil

import pydicom
import pytest
from pydicom.data import get_testdata_file

from netorigin.runtime.slide.slide import Slide

from .dicom_slides import volume_instances
from .helpers import run_cli


def predict(monkeypatch, capsys, tiny_model, slide, *extra):
    return run_cli(monkeypatch, capsys, "predict", slide, "-m", tiny_model, "--device", "cpu", "--json", *extra)


def test_a_folder_of_dicom_instances_is_one_slide_and_its_ids_are_reported(monkeypatch, capsys, tiny_model, slides,
                                                                           dicom_slides):
    folder = dicom_slides["svs20x"]
    annotations = slides["svs20x"].annotations  # QuPath coordinates are level-0 pixels: the same frame in DICOM
    code, out, err = predict(monkeypatch, capsys, tiny_model, folder, "-a", annotations)
    assert code == 0, err
    report = json.loads(out)
    _, header = volume_instances(folder)[0]
    fingerprint = report["slides"][0]["fingerprint"]
    assert fingerprint["vendor"] == "dicom" and fingerprint["name"] == folder.name
    assert fingerprint["dicom"] == {"study_uid": header.StudyInstanceUID, "series_uid": header.SeriesInstanceUID,
                                    "container": header.ContainerIdentifier}
    assert fingerprint["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert fingerprint["dimensions"] == [int(header.TotalPixelMatrixColumns), int(header.TotalPixelMatrixRows)]
    assert report["verdict"] in ("pancreas", "small_intestine", "uncertain")

    instance, _ = volume_instances(folder)[-1]  # one instance file (the coarsest level): OpenSlide finds the rest
    code, out, err = predict(monkeypatch, capsys, tiny_model, instance, "-a", annotations)
    assert code == 0, err
    assert json.loads(out)["patient_sum"] == report["patient_sum"]


def test_a_folder_of_two_slides_is_refused_naming_both(monkeypatch, capsys, tiny_model, dicom_slides):
    folder = dicom_slides["both"]
    code, out, err = predict(monkeypatch, capsys, tiny_model, folder)
    series = sorted({h.SeriesInstanceUID for name in ("svs20x", "svs40x")
                     for _, h in volume_instances(dicom_slides[name])})
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {folder}: folder holds 2 slides: series {series[0]} (container Unknown); "
                                f"series {series[1]} (container Unknown); give one slide per folder"]


def test_a_ct_image_is_named_as_what_it_is(monkeypatch, capsys, tiny_model, tmp_path):
    ct = shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "scan.dcm")
    code, out, err = predict(monkeypatch, capsys, tiny_model, ct)
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {ct}: a DICOM CT Image Storage, not a whole-slide image"]
    code, out, err = predict(monkeypatch, capsys, tiny_model, tmp_path)
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {tmp_path}: folder holds no DICOM whole-slide image (no VL Whole Slide "
                                "Microscopy VOLUME instance) (it holds CT Image Storage)"]


def test_a_series_missing_instances_is_refused_though_openslide_would_open_it(monkeypatch, capsys, tiny_model,
                                                                              dicom_slides, tmp_path):
    """Without its base level OpenSlide opens the resampled levels as a smaller slide: refused, as folder and as file.
    A level instance holding fewer frames than its tiles is refused too."""
    partial = tmp_path / "partial"
    shutil.copytree(dicom_slides["svs20x"], partial)
    finest, header = volume_instances(partial)[0]
    finest.unlink()
    remaining, _ = volume_instances(partial)[0]
    for given in (partial, remaining):
        code, out, err = predict(monkeypatch, capsys, tiny_model, given)
        assert code == 1 and out == ""
        assert err.splitlines() == [f"error: {given}: series {header.SeriesInstanceUID} lacks its base level (every "
                                    "VOLUME instance here is a resampled level): instances are missing"]

    truncated = tmp_path / "truncated"
    shutil.copytree(dicom_slides["svs20x"], truncated)
    finest, header = volume_instances(truncated)[0]
    dataset = pydicom.dcmread(finest)
    dataset.NumberOfFrames = int(dataset.NumberOfFrames) - 1
    dataset.save_as(finest)
    code, out, err = predict(monkeypatch, capsys, tiny_model, truncated)
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: {truncated}: instance {finest.name} of series {header.SeriesInstanceUID} "
                                f"holds {int(header.NumberOfFrames) - 1} of its level's {int(header.NumberOfFrames)} "
                                "frames: truncated"]


def test_a_short_last_frame_is_passed_over_for_the_thumbnail(dicom_slides):
    with Slide(dicom_slides["short"]) as slide:
        coarsest = len(slide.levels) - 1
        image = slide.thumbnail(max(slide.levels[-1].width, slide.levels[-1].height))
        assert max(image.size) == max(slide.levels[-1].width, slide.levels[-1].height)
        assert slide.thumbnail_note.startswith(f"level {coarsest} cannot be decoded (OpenSlide: Dimensional "
                                               "mismatch reading JPEG")
        assert slide.thumbnail_note.endswith(f"the slide's picture was made from level {coarsest - 1}")


def test_a_short_frame_in_a_read_is_one_line_naming_slide_and_level(dicom_slides):
    from netorigin.runtime.errors import SlideError

    with Slide(dicom_slides["short"]) as slide:
        level = slide.levels[-1]
        with pytest.raises(SlideError) as caught:
            slide.read_region(0, 0, level, max(level.width, level.height))
    assert str(caught.value).startswith(f"{dicom_slides['short']}: level {level.index} cannot be decoded at (0, 0): "
                                        "a damaged or short tile or frame (OpenSlide: Dimensional mismatch")
    assert "\n" not in str(caught.value)


def test_a_damaged_dicom_header_is_one_line(monkeypatch, capsys, tiny_model, dicom_slides, tmp_path):
    broken = tmp_path / "broken.dcm"
    instance, _ = volume_instances(dicom_slides["svs20x"])[0]
    broken.write_bytes(instance.read_bytes()[:400])
    code, out, err = predict(monkeypatch, capsys, tiny_model, broken)
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: {broken}: ")
    assert pydicom.misc.is_dicom(broken)  # still a DICOM file by its preamble


def test_a_dicom_folder_report_is_verified_bit_for_bit(monkeypatch, capsys, tiny_model, slides, dicom_slides,
                                                       tmp_path):
    code, _, err = predict(monkeypatch, capsys, tiny_model, dicom_slides["svs20x"], "-a", slides["svs20x"].annotations,
                           "--out", tmp_path / "out", "--case-id", "d1")
    assert code == 0, err
    moved = tmp_path / "archive" / "slide-folder"
    shutil.copytree(dicom_slides["svs20x"], moved)
    shutil.copy(slides["svs20x"].annotations, tmp_path / "archive" / "a.geojson")
    code, out, _ = run_cli(monkeypatch, capsys, "verify", tmp_path / "out" / "d1.json", "-m", tiny_model, "--slides",
                           tmp_path / "archive")
    assert code == 0, out
    assert f"inputs: {moved}" in out
    _, header = volume_instances(dicom_slides["svs20x"])[0]
    page = (tmp_path / "out" / "d1.html").read_text()
    assert f"DICOM study {header.StudyInstanceUID} · series {header.SeriesInstanceUID}" in page
