"""DICOM results for DICOM slides: the SR says what the JSON report says (field by field), the annotations hold the
region and every patch with its decision, both pass dicom3tools' dciodvfy with zero errors."""

from __future__ import annotations

import json
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from netorigin.runtime.dicom.dicom_results import LOCAL_CODES, VERDICT_CODES, vote_code

from .dicom_slides import volume_instances
from .helpers import run_cli, run_cli_outside_a_test


def dciodvfy_errors(path) -> list[str]:
    """The error lines of dicom3tools' validator (an independent checker, not highdicom's own)."""
    validator = shutil.which("dciodvfy")
    if validator is None:
        pytest.fail("dciodvfy is not installed: run `bash tests/install-system-packages.sh` (the README's test "
                    "command does)")
    run = subprocess.run([validator, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def dicom_case(tiny_model, slides, dicom_slides, tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom-results")
    code, _, err = run_cli_outside_a_test("predict", dicom_slides["svs20x"], "-a", slides["svs20x"].annotations,
                                          "-m", tiny_model, "--device", "cpu", "--out", out, "--case-id", "n1")
    assert code == 0, err
    return out, json.loads((out / "n1.json").read_text())


def texts(group, concept: str) -> list[str]:
    """The TEXT items of a measurement group with this DCM concept code, in order."""
    return [item.TextValue for item in group[0].ContentSequence
            if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == concept]


def measurements_by_code(group) -> dict[str, float]:
    return {m.name.value: m.value for m in group.get_measurements()}


def test_the_sr_says_what_the_json_report_says(dicom_case, dicom_slides):
    out, report = dicom_case
    assert report["dicom_results"]["sr"]["file"] == "n1.sr.dcm"
    sr = hd.sr.srread(out / "n1.sr.dcm")
    _, source = volume_instances(dicom_slides["svs20x"])[0]
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert str(sr.SOPInstanceUID) == report["dicom_results"]["sr"]["sop_instance_uid"]
    assert (sr.PatientID, str(sr.PatientName)) == (source.PatientID, str(source.PatientName))
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID

    group = sr.content.get_image_measurement_groups()[0]
    values = measurements_by_code(group)
    votes = {k: v for k, v in report["votes"].items() if k != "n_patches"}
    assert values == {LOCAL_CODES["s"][0]: report["patient_sum"], LOCAL_CODES["lower"][0]: report["band"]["lower"],
                      LOCAL_CODES["upper"][0]: report["band"]["upper"], LOCAL_CODES["c"][0]: report["confidence"],
                      **{vote_code(name).value: n for name, n in votes.items()},
                      LOCAL_CODES["patches"][0]: report["votes"]["n_patches"]}
    (verdict,) = group.get_qualitative_evaluations()
    assert (verdict.name.value, verdict.value.value) == (LOCAL_CODES["verdict"][0],
                                                        VERDICT_CODES[report["verdict"]][0])
    assert texts(group, "121106") == [report["warning"], *report["notes"]]  # DCM Comment
    assert texts(group, "111001") == ["netorigin"]  # DCM Algorithm Name
    assert texts(group, "111003") == [report["versions"]["netorigin"]]  # DCM Algorithm Version
    signature = report["model"]["signature"]
    assert texts(group, "111002") == [  # DCM Algorithm Parameters
        f"graph_sha256={report['model']['graph_sha256']}", f"verdict_sha256={report['model']['verdict_sha256']}",
        f"signature={signature['state']} {signature['key_id'] or ''}".strip(), f"seed={report['seed']}"]


def test_the_annotations_hold_every_patch_where_it_was_read_with_its_decision(dicom_case, dicom_slides):
    out, report = dicom_case
    annotations = hd.ann.annread(out / "n1.slide0.ann.dcm")
    _, source = volume_instances(dicom_slides["svs20x"])[0]
    to_pixels = hd.spatial.ReferenceToImageTransformer.for_image(source, for_total_pixel_matrix=True)
    region, patches = annotations.get_annotation_groups()
    assert region.label == "region sampled" and patches.label == "patches"
    corners = patches.get_graphic_data(coordinate_type=annotations.AnnotationCoordinateType)
    assert len(corners) == len(report["patches"])
    for square, patch in zip(corners, report["patches"]):
        top_left = to_pixels(square[:1])[0][:2] + 0.5
        np.testing.assert_allclose(top_left, [patch["x"], patch["y"]], atol=1e-3)
    names, values, _ = patches.get_measurements()
    assert [n.value for n in names] == [LOCAL_CODES["decision"][0]]
    np.testing.assert_allclose(values[:, 0], [p["decision"] for p in report["patches"]], rtol=1e-6)


def test_both_objects_pass_dciodvfy_with_zero_errors(dicom_case):
    out, _ = dicom_case
    for name in ("n1.sr.dcm", "n1.slide0.ann.dcm"):
        assert dciodvfy_errors(out / name) == [], name


def test_an_insufficient_tissue_case_gets_an_sr_without_a_verdict(monkeypatch, capsys, tiny_model, dicom_slides,
                                                                  tmp_path):
    glass = tmp_path / "glass.geojson"
    glass.write_text(json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
                                  "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [60, 5], [60, 60],
                                                                                   [5, 60], [5, 5]]]}}]))
    code, _, _ = run_cli(monkeypatch, capsys, "predict", dicom_slides["svs20x"], "-a", glass, "-m", tiny_model,
                         "--device", "cpu", "--out", tmp_path / "out", "--case-id", "few")
    assert code == 3
    report = json.loads((tmp_path / "out" / "few.json").read_text())
    assert report["dicom_results"]["annotations"] == []
    sr = hd.sr.srread(tmp_path / "out" / "few.sr.dcm")
    group = sr.content.get_image_measurement_groups()[0]
    assert measurements_by_code(group) == {LOCAL_CODES["possible"][0]: report["patches_possible"],
                                           LOCAL_CODES["required"][0]: report["patches_required"]}
    (status,) = group.get_qualitative_evaluations()
    assert (status.name.value, status.value.meaning) == (LOCAL_CODES["status"][0], "Insufficient sample")
    assert dciodvfy_errors(tmp_path / "out" / "few.sr.dcm") == []
    assert not list((tmp_path / "out").glob("*.ann.dcm"))


def test_slides_that_are_not_dicom_get_no_dicom_results(monkeypatch, capsys, tiny_model, slides, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "predict", slides["svs20x"].slide, "-a", slides["svs20x"].annotations,
                           "-m", tiny_model, "--device", "cpu", "--out", tmp_path, "--case-id", "svs")
    assert code == 0, err
    assert json.loads((tmp_path / "svs.json").read_text())["dicom_results"] is None
    assert not list(tmp_path.glob("*.dcm"))


def test_pydicom_reads_both_as_the_sop_classes_they_claim(dicom_case):
    out, _ = dicom_case
    assert pydicom.dcmread(out / "n1.sr.dcm").SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert pydicom.dcmread(out / "n1.slide0.ann.dcm").SOPClassUID == "1.2.840.10008.5.1.4.1.1.91.1"


def test_without_highdicom_the_report_says_why_no_dicom_results_were_written(monkeypatch, capsys, tiny_model,
                                                                              slides, dicom_slides, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "highdicom", None)  # as on an install without the `dicom` extra
    code, _, err = run_cli(monkeypatch, capsys, "predict", dicom_slides["svs20x"], "-a", slides["svs20x"].annotations,
                           "-m", tiny_model, "--device", "cpu", "--out", tmp_path, "--case-id", "lean")
    assert code == 0, err
    assert json.loads((tmp_path / "lean.json").read_text())["dicom_results"] == {
        "not_written": "DICOM results need highdicom: pip install 'netorigin[dicom]'"}
    assert not list(tmp_path.glob("*.dcm"))


def test_a_slide_given_as_one_coarse_instance_file_is_annotated_in_its_base_level_frame(
        monkeypatch, capsys, tiny_model, slides, dicom_slides, tmp_path):
    """OpenSlide reads the whole series from any of its files; the annotations are placed by the base level."""
    instance, _ = volume_instances(dicom_slides["svs20x"])[-1]
    code, _, err = run_cli(monkeypatch, capsys, "predict", instance, "-a", slides["svs20x"].annotations, "-m",
                           tiny_model, "--device", "cpu", "--out", tmp_path, "--case-id", "coarse")
    assert code == 0, err
    report = json.loads((tmp_path / "coarse.json").read_text())
    _, base = volume_instances(dicom_slides["svs20x"])[0]
    assert hd.sr.srread(tmp_path / "coarse.sr.dcm").CurrentRequestedProcedureEvidenceSequence[0] \
        .ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == base.SOPInstanceUID
    annotations = hd.ann.annread(tmp_path / "coarse.slide0.ann.dcm")
    to_pixels = hd.spatial.ReferenceToImageTransformer.for_image(base, for_total_pixel_matrix=True)
    corners = annotations.get_annotation_groups()[1].get_graphic_data(
        coordinate_type=annotations.AnnotationCoordinateType)
    first = report["patches"][0]
    np.testing.assert_allclose(to_pixels(corners[0][:1])[0][:2] + 0.5, [first["x"], first["y"]], atol=1e-3)


def test_a_case_of_two_slides_from_two_studies_gets_one_sr_and_an_annotation_object_per_slide_in_its_study(
        monkeypatch, capsys, tiny_model, slides, dicom_slides, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "predict", dicom_slides["svs20x"], dicom_slides["svs40x"], "-a",
                           slides["svs20x"].annotations, "-a", slides["svs40x"].annotations, "--specimen", "A",
                           "--specimen", "B", "-m", tiny_model, "--device", "cpu", "--out", tmp_path,
                           "--case-id", "two")
    assert code == 0, err
    sources = [volume_instances(dicom_slides[name])[0][1] for name in ("svs20x", "svs40x")]
    assert sources[0].StudyInstanceUID != sources[1].StudyInstanceUID
    sr = pydicom.dcmread(tmp_path / "two.sr.dcm")
    referenced = {item.ReferencedSeriesSequence[0].SeriesInstanceUID
                  for name in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
                  for item in sr.get(name, [])}
    assert referenced == {s.SeriesInstanceUID for s in sources}
    for index, source in enumerate(sources):
        annotations = pydicom.dcmread(tmp_path / f"two.slide{index}.ann.dcm")
        assert annotations.StudyInstanceUID == source.StudyInstanceUID
        assert dciodvfy_errors(tmp_path / f"two.slide{index}.ann.dcm") == []
    assert dciodvfy_errors(tmp_path / "two.sr.dcm") == []
