"""`netorigin verify`: a report is replayed from what it records (model identity, slides by content, annotations by
digest, seed, rules, engine) and is either reproduced bit for bit (exit 0) or its differences are named (exit 1)."""

from __future__ import annotations

import json
import shutil

import pytest

from netorigin.calibration.bands import calibrate_bands

from .helpers import rebanded, run_cli


@pytest.fixture()
def case(tmp_path, slides, tiny_model, monkeypatch, capsys):
    """A predicted case whose slide and annotations were then moved and renamed (verify finds them by content)."""
    slide, geojson = copied(slides, tmp_path / "scanner", "s1")
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "predict", slide, "-a", geojson, "-m", tiny_model, "--device", "cpu",
                           "--seed", "3", "--case-id", "v1", "--out", out)
    assert code == 0, err
    archive = tmp_path / "archive" / "2026"
    archive.mkdir(parents=True)
    shutil.move(slide, archive / "renamed.svs")
    shutil.move(geojson, archive / "renamed.geojson")
    return out / "v1.json", archive.parent


def copied(slides, folder, stem):
    """The 20x test slide and its annotations copied into `folder` as STEM.svs and STEM.geojson."""
    folder.mkdir(parents=True, exist_ok=True)
    return (shutil.copy(slides["svs20x"].slide, folder / f"{stem}.svs"),
            shutil.copy(slides["svs20x"].annotations, folder / f"{stem}.geojson"))


def verify(monkeypatch, capsys, report, model, *extra):
    return run_cli(monkeypatch, capsys, "verify", report, "-m", model, *extra)


def edited(report, tmp_path, **changes):
    doc = json.loads(report.read_text()) | changes
    target = tmp_path / "edited.json"
    target.write_text(json.dumps(doc))
    return target


def test_report_is_reproduced_bit_for_bit_from_moved_and_renamed_files(case, tiny_model, monkeypatch, capsys):
    report, archive = case
    code, out, err = verify(monkeypatch, capsys, report, tiny_model, "--slides", archive)
    assert code == 0, out + err
    assert out.splitlines()[0].startswith(f"{report}: reproduced bit for bit (case v1: ")
    assert f"inputs: {archive / '2026' / 'renamed.svs'}" in out

    code, out, _ = verify(monkeypatch, capsys, report, tiny_model, "--slides", archive, "--json")
    audit = json.loads(out)
    assert code == 0 and (audit["case"], audit["reproduced"], audit["differences"]) == ("v1", True, [])


def test_without_slides_the_folder_the_report_names_is_searched(tmp_path, slides, tiny_model, monkeypatch, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    slide = shutil.copy(slides["svs20x"].slide, folder / "s.svs")
    code, _, err = run_cli(monkeypatch, capsys, "predict", slide, "-m", tiny_model, "--device", "cpu",
                           "--out", tmp_path / "out")  # tissue detection: no annotation file
    assert code == 0, err
    code, out, _ = verify(monkeypatch, capsys, tmp_path / "out" / "s.json", tiny_model)
    assert code == 0 and "reproduced bit for bit (case s: " in out


def test_an_edited_result_is_named_with_both_values(case, tiny_model, monkeypatch, capsys, tmp_path):
    report, archive = case
    doc = json.loads(report.read_text())
    doc["patches"][3]["decision"] += 1e-9
    doc["patient_sum"] = 12.5
    doc["band"]["lower"] -= 1.0
    doc["notes"].append("an added note")
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc))
    code, out, _ = verify(monkeypatch, capsys, changed, tiny_model, "--slides", archive)
    assert code == 1
    original = json.loads(report.read_text())
    lines = out.splitlines()
    assert lines[0] == f"{changed}: NOT reproduced (case v1), 4 difference(s):"
    assert lines[1:5] == [f"  - patient_sum: report 12.5, replay {json.dumps(original['patient_sum'])}",
                          f"  - band.lower: report {json.dumps(doc['band']['lower'])}, replay "
                          f"{json.dumps(original['band']['lower'])}",
                          f"  - notes: {len(doc['notes'])} items in the report, {len(original['notes'])} in the "
                          "replay",
                          f"  - patches.3.decision: report {json.dumps(doc['patches'][3]['decision'])}, replay "
                          f"{json.dumps(original['patches'][3]['decision'])}"]


def test_another_seed_gives_other_patches(case, tiny_model, monkeypatch, capsys, tmp_path):
    report, archive = case
    code, out, _ = verify(monkeypatch, capsys, edited(report, tmp_path, seed=4), tiny_model, "--slides", archive)
    assert code == 1
    assert any(line.startswith("  - patient_sum: report ") for line in out.splitlines())
    assert any(line.startswith("  - patches.0.x: report ") for line in out.splitlines())


def test_another_model_is_named_before_any_run(case, tiny_model, monkeypatch, capsys, tmp_path):
    report, archive = case
    other = tmp_path / "other.onnx"
    rebanded(tiny_model, calibrate_bands([-40.0, 40.0, 1.0], [-3.0, 2.0, 5.0]), other)
    code, out, _ = verify(monkeypatch, capsys, report, other, "--slides", archive)
    assert code == 1
    assert "  - model: another model (bands, rules or record): the report's verdict_sha256 is " in out


def test_a_changed_slide_and_a_changed_annotation_file_are_named(case, tiny_model, slides, monkeypatch, capsys):
    report, archive = case
    geojson = archive / "2026" / "renamed.geojson"
    doc = json.loads(geojson.read_text())
    doc["features"] = doc["features"][:1]  # the exclusion is gone
    geojson.write_text(json.dumps(doc))
    code, out, _ = verify(monkeypatch, capsys, report, tiny_model, "--slides", archive)
    assert code == 1
    assert "  - annotations s1.geojson of slide s1.svs: no file in " in out

    shutil.copy(geojson, archive / "2026" / "s1.geojson")  # the edited file under the recorded name
    code, out, _ = verify(monkeypatch, capsys, report, tiny_model, "--slides", archive)
    assert code == 1
    assert f"  - annotations s1.geojson of slide s1.svs: {archive / '2026' / 's1.geojson'} differs from the " \
           "annotations the report was made with (sha256 " in out

    shutil.copy(slides["svs40x"].slide, archive / "2026" / "s1.svs")  # another scan under the recorded name
    (archive / "2026" / "renamed.svs").unlink()
    code, out, _ = verify(monkeypatch, capsys, report, tiny_model, "--slides", archive)
    assert code == 1
    assert f"  - slide s1.svs: {archive / '2026' / 's1.svs'} differs from the slide the report was made from (" in out


def test_an_insufficient_tissue_report_is_replayed(tmp_path, tiny_model, monkeypatch, capsys, slides):
    """Two specimens, the second annotated on glass only: 10 of the model's 20 patches are possible."""
    folder = tmp_path / "in"
    slide, good = copied(slides, folder, "s")
    glass = folder / "glass.geojson"
    glass.write_text(json.dumps([{"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
                                  "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [60, 5], [60, 60],
                                                                                   [5, 60], [5, 5]]]}}]))
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "predict", slide, slide, "-a", good, "-a", glass, "--specimen", "A",
                           "--specimen", "B", "-m", tiny_model, "--device", "cpu", "--out", out, "--case-id", "few")
    assert code == 3, err
    code, out_text, _ = verify(monkeypatch, capsys, out / "few.json", tiny_model, "--slides", folder)
    assert code == 0, out_text
    assert "reproduced bit for bit (case few: no verdict" in out_text
    changed = edited(out / "few.json", tmp_path, patches_possible=1)
    code, out_text, _ = verify(monkeypatch, capsys, changed, tiny_model, "--slides", folder)
    assert code == 1 and "  - patches_possible: report 1, replay 10" in out_text


@pytest.mark.parametrize("content, problem", [
    ("{", "not a readable JSON report"),
    ('{"status": "ok"}', "not a netorigin case report"),
    ('{"status": "ok", "inputs": [], "report_version": 2}', "report_version 2 cannot be replayed"),
    ('{"status": "ok", "report_version": 3}', "not a complete netorigin case report (top level: 'case' is a "
                                              "required property)"),
])
def test_what_is_not_a_replayable_report_exits_2_in_one_line(tmp_path, tiny_model, monkeypatch, capsys, content,
                                                            problem):
    report = tmp_path / "r.json"
    report.write_text(content)
    code, out, err = verify(monkeypatch, capsys, report, tiny_model)
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith(f"error: cannot verify: {report}: {problem}")


def test_a_report_with_a_broken_field_exits_2_naming_it(case, tiny_model, monkeypatch, capsys, tmp_path):
    report, archive = case
    doc = json.loads(report.read_text())
    doc["inputs"][0]["mpp"] = "0.5"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    code, out, err = verify(monkeypatch, capsys, broken, tiny_model, "--slides", archive)
    assert code == 2 and out == ""
    assert err.strip() == (f"error: cannot verify: {broken}: not a complete netorigin case report (inputs/0/mpp: "
                           "'0.5' is not of type 'number')")
