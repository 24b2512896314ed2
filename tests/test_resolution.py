"""Which microns per pixel a slide gets (--mpp, --force-mpp), and the resolution checks made before any read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from netorigin.export.synthetic import write_pyramid
from netorigin.runtime.errors import ConfigurationError, ManifestError, SlideError
from netorigin.runtime.model.contract import load_contract
from netorigin.runtime.slide.sampling import PatchGeometry, plan_reads
from netorigin.runtime.slide.slide import MppRule, Slide

from .helpers import run_cli

MODEL_MPP = 497 / 224


def tissue(width: int, height: int, seed: int = 0) -> Image.Image:
    """Pink, textured, never white: every read passes the white filter."""
    rng = np.random.default_rng(seed)
    base = np.array([200, 120, 170], dtype=np.int16)
    noise = rng.integers(-40, 40, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def slide_file(tmp_path, name, width, height, mpp, downsamples=(1, 4, 16), svs=False):
    path = tmp_path / f"{name}.{'svs' if svs else 'tif'}"
    write_pyramid(path, tissue(width, height), mpp, downsamples=downsamples, svs=svs)
    ann = tmp_path / f"{name}.geojson"
    ann.write_text(json.dumps([{"type": "Feature", "properties": {"objectType": "annotation",
                                                                   "classification": {"name": "Tumor"}},
                                "geometry": {"type": "Polygon", "coordinates": [
                                    [[0, 0], [width, 0], [width, height], [0, height], [0, 0]]]}}]))
    return path, ann


def predict(monkeypatch, capsys, model, slide, ann, *extra):
    return run_cli(monkeypatch, capsys, "predict", slide, "-a", ann, "-m", model, "--device", "cpu", "--json",
                   *extra)


def one_line_error(code, out, err, path):
    lines = err.strip().splitlines()
    assert code == 1 and out == ""
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ")
    return lines[0]


def test_a_72_dpi_image_gets_no_verdict(monkeypatch, capsys, tiny_model, tmp_path):
    """An image editor's default (72 dpi = 352.8 um/px) is not a scan, with or without --mpp."""
    slide, ann = slide_file(tmp_path, "editor", 300, 250, 25_400 / 72, downsamples=(1,))
    for extra in ((), ("--mpp", "0.5")):  # --mpp never overrides what the slide records
        line = one_line_error(*predict(monkeypatch, capsys, tiny_model, slide, ann, *extra), slide)
        assert "records 352.778 x 352.778 um per pixel, outside what slide scanners produce" in line
    line = one_line_error(*predict(monkeypatch, capsys, tiny_model, slide, ann, "--force-mpp", "352.8"), slide)
    assert "slide is 352.8 um per pixel (forced) at its finest level; the model needs 2.219 um per pixel" in line


def test_a_slide_smaller_than_one_field_of_view_says_so(monkeypatch, capsys, tiny_model, tmp_path):
    slide, ann = slide_file(tmp_path, "tiny", 16, 16, 0.5, downsamples=(1,))
    line = one_line_error(*predict(monkeypatch, capsys, tiny_model, slide, ann), slide)
    assert "slide is 8 x 8 um (16 x 16 px at 0.5 um/px), smaller than one 497 um field of view" in line


def test_mpp_fills_in_only_where_the_slide_records_none(monkeypatch, capsys, tiny_model, tmp_path):
    bare, bare_ann = slide_file(tmp_path, "bare", 2400, 2000, None)
    line = one_line_error(*predict(monkeypatch, capsys, tiny_model, bare, bare_ann), bare)
    assert "does not record microns per pixel; give it with --mpp" in line
    code, out, err = predict(monkeypatch, capsys, tiny_model, bare, bare_ann, "--mpp", "0.5")
    assert code == 0, err
    fingerprint = json.loads(out)["slides"][0]["fingerprint"]
    assert (fingerprint["mpp"], fingerprint["mpp_source"]) == (0.5, "fallback")

    recorded, recorded_ann = slide_file(tmp_path, "recorded", 2400, 2000, 0.5)
    reports = {}
    for name, extra in (("mpp", ("--mpp", "0.25")), ("force", ("--force-mpp", "0.25"))):
        code, out, err = predict(monkeypatch, capsys, tiny_model, recorded, recorded_ann, *extra)
        assert code == 0, err
        reports[name] = json.loads(out)["slides"][0]
    assert (reports["mpp"]["fingerprint"]["mpp"], reports["mpp"]["fingerprint"]["mpp_source"]) == (0.5, "slide")
    assert (reports["force"]["fingerprint"]["mpp"], reports["force"]["fingerprint"]["mpp_source"]) == (0.25, "forced")
    assert reports["force"]["read_size"] != reports["mpp"]["read_size"]


def test_mpp_and_force_mpp_together_or_nonpositive_are_refused(monkeypatch, capsys, tiny_model, tmp_path):
    slide, ann = slide_file(tmp_path, "s", 2400, 2000, 0.5)
    code, out, err = predict(monkeypatch, capsys, tiny_model, slide, ann, "--mpp", "0.5", "--force-mpp", "0.5")
    assert code == 2 and "not both" in err and out == ""
    code, out, err = predict(monkeypatch, capsys, tiny_model, slide, ann, "--mpp", "-1")
    assert code == 2 and "--mpp" in err and out == ""
    with pytest.raises(ConfigurationError, match="must be a positive number"):
        MppRule(forced=float("nan"))


def test_a_refused_slide_closes_its_handle(tmp_path, monkeypatch):
    slide, _ = slide_file(tmp_path, "editor", 300, 250, 25_400 / 72, downsamples=(1,))
    import openslide

    closed = []
    original = openslide.OpenSlide.close
    monkeypatch.setattr(openslide.OpenSlide, "close", lambda self: (closed.append(True), original(self)))
    with pytest.raises(SlideError, match="outside what slide scanners produce"):
        Slide(slide)
    assert closed == [True]


@pytest.mark.parametrize("mpp, expected_level", [
    (0.25, 3),   # 40x: ds 8 gives 2.0 um/px (fits), ds 16 gives 4.0 (too coarse)
    (0.5, 2),    # 20x: ds 4 gives 2.0
    (1.0, 1),    # 10x: ds 2 gives 2.0
    (2.2, 0),    # only level 0 fits (2.2 <= 2.219)
])
def test_level_rule_on_a_five_level_pyramid(tmp_path, mpp, expected_level):
    path, _ = slide_file(tmp_path, f"p{mpp}", 4096, 4096, mpp, downsamples=(1, 2, 4, 8, 16))
    with Slide(path) as slide:
        assert [round(lv.downsample) for lv in slide.levels] == [1, 2, 4, 8, 16]
        plan = plan_reads(slide, PatchGeometry())
        level_mpp = mpp * plan.level.downsample
        assert plan.level.index == expected_level
        assert level_mpp <= MODEL_MPP * (1 + 1e-6)
        coarser = [lv for lv in slide.levels if lv.downsample > plan.level.downsample]
        assert all(mpp * lv.downsample > MODEL_MPP for lv in coarser)
        assert abs(plan.field_of_view_um - 497) <= 0.005 * 497
        assert plan.read_size == round(497 / level_mpp)


@pytest.mark.parametrize("mpp, expected_level", [
    (0.7, 0),   # 0.7 * 3.3 = 2.31 is too coarse (a downsample rounded to 3 would wrongly give 2.1)
    (0.6, 1),   # 0.6 * 3.3 = 1.98 fits, 0.6 * 9.7 = 5.8 does not
    (0.22, 2),  # 0.22 * 9.7 = 2.13 fits
])
def test_level_rule_with_non_integer_downsamples(tmp_path, mpp, expected_level):
    """NDPI / MRXS-like pyramids: downsamples such as 3.3 are used as measured, never rounded."""
    path, _ = slide_file(tmp_path, f"ndpi{mpp}", 4000, 3000, mpp, downsamples=(1, 3.3, 9.7, 29))
    with Slide(path) as slide:
        downsamples = [lv.downsample for lv in slide.levels]
        assert downsamples[1] == pytest.approx(3.3, rel=2e-3) and downsamples[2] == pytest.approx(9.7, rel=2e-3)
        plan = plan_reads(slide, PatchGeometry())
        assert plan.level.index == expected_level
        assert plan.read_size == round(497 / (mpp * downsamples[expected_level]))
        assert abs(plan.field_of_view_um - 497) <= 0.005 * 497


def test_a_forced_level_whose_read_misses_the_field_of_view_is_refused(tmp_path):
    path, _ = slide_file(tmp_path, "coarse", 4096, 4096, 0.35, downsamples=(1, 4, 32))
    with Slide(path) as slide:
        with pytest.raises(SlideError, match=r"level 2 \(11.2 um/px\) reads 44 px = 492.8 um, not the model's 497 um"):
            plan_reads(slide, PatchGeometry(), level_index=2)


def test_batch_rows_and_training_cohorts_take_the_same_mpp_rule(tmp_path):
    from netorigin.export.embeddings import iter_cohort
    from netorigin.runtime.batch.slides import read_manifest

    bare, bare_ann = slide_file(tmp_path, "bare", 2400, 2000, None)
    manifest = tmp_path / "batch.csv"
    manifest.write_text("case,slide,annotations,mpp,force_mpp\n"
                        f"a,{bare.name},{bare_ann.name},0.5,\n"
                        f"b,{bare.name},{bare_ann.name},,0.25\n"
                        f"c,{bare.name},{bare_ann.name},,\n")
    rules = [case.slides[0].mpp for case in read_manifest(manifest, MppRule(fallback=0.4))]
    assert rules == [MppRule(fallback=0.5), MppRule(fallback=0.4, forced=0.25), MppRule(fallback=0.4)]
    forced = [case.slides[0].mpp for case in read_manifest(manifest, MppRule(forced=0.3))]
    assert forced == [MppRule(fallback=0.5, forced=0.3), MppRule(forced=0.25), MppRule(forced=0.3)]
    both = tmp_path / "both.csv"
    both.write_text(f"case,slide,mpp,force_mpp\na,{bare.name},0.5,0.25\n")
    with pytest.raises(ManifestError, match="line 2: give mpp .* or force_mpp, not both"):
        read_manifest(both)
    both.write_text(f"case,slide,force_mpp\na,{bare.name},-2\n")
    with pytest.raises(ManifestError, match="line 2: force_mpp '-2' is not a positive number"):
        read_manifest(both)

    cohort = tmp_path / "cohort.csv"
    cohort.write_text(f"case,label,specimen,slide,annotations\np1,pancreas,A,{bare.name},{bare_ann.name}\n")
    with pytest.raises(SlideError, match="does not record microns per pixel"):
        next(iter_cohort(cohort, 4, seed=0))
    case = next(iter_cohort(cohort, 4, seed=0, mpp=MppRule(fallback=0.5)))
    assert case.pixels.shape == (4, 224, 224, 3)


def test_batch_force_mpp_reaches_every_slide_and_reports_the_recorded_value(monkeypatch, capsys, tiny_model,
                                                                             tmp_path):
    slide, ann = slide_file(tmp_path, "s", 2400, 2000, 0.5)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case,slide,annotations\nc1,{slide.name},{ann.name}\n")
    code, out, err = run_cli(monkeypatch, capsys, "batch", manifest, "-m", tiny_model, "--device", "cpu",
                             "-o", tmp_path / "out", "--force-mpp", "0.4")
    assert code == 0, err
    fingerprint = json.loads((tmp_path / "out" / "c1.json").read_text())["slides"][0]["fingerprint"]
    assert (fingerprint["mpp"], fingerprint["mpp_source"], fingerprint["mpp_recorded"]) == (0.4, "forced", 0.5)


def test_the_python_api_takes_a_number_as_fallback_mpp(tiny_model, tmp_path):
    from netorigin.runtime import Predictor, SlideInput

    bare, ann = slide_file(tmp_path, "bare", 2400, 2000, None)
    predictor = Predictor(tiny_model, device="cpu")
    result = predictor.predict_case([SlideInput(bare, ann, mpp=0.5)], case_id="c")
    assert result.slides[0].fingerprint["mpp_source"] == "fallback"
    assert predictor.predict_case([bare], [ann], case_id="c", mpp=0.5).verdict == result.verdict
    with pytest.raises(ConfigurationError, match="mpp must be a number"):
        SlideInput(bare, ann, mpp="0.5")


def test_embed_takes_the_region_and_mpp_options(monkeypatch, capsys, tmp_path):
    bare, ann = slide_file(tmp_path, "bare", 2400, 2000, None)
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(f"case,label,specimen,slide,annotations\np1,pancreas,A,{bare.name},{ann.name}\n")
    args = ("embed", cohort, "-o", tmp_path / "e.npz", "--weights-kind", "random", "--patches-per-case", "2")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 1 and "does not record microns per pixel" in err
    code, out, err = run_cli(monkeypatch, capsys, *args, "--mpp", "0.5", "--object-type", "annotation",
                             "--include-class", "Tumor")
    assert code == 0, err
    assert "2 patches of 1 patients" in out
    code, out, err = run_cli(monkeypatch, capsys, *args, "--mpp", "0.5", "--include-class", "Stroma")
    assert code == 1 and "no annotation object of class Stroma" in err


def test_a_single_level_slide_gets_a_verdict_and_the_report_states_the_cost(monkeypatch, capsys, tiny_model,
                                                                            tmp_path):
    """A region exported from a scan (one level, 0.25 um/px): read at full resolution, never refused for it."""
    slide, ann = slide_file(tmp_path, "crop", 2400, 2400, 0.25, downsamples=(1,))
    code, out, err = predict(monkeypatch, capsys, tiny_model, slide, ann)
    assert code == 0, err
    report = json.loads(out)
    geometry = PatchGeometry.from_metadata(load_contract(tiny_model).patch)
    read = round(geometry.field_of_view_um / 0.25)
    note = (f"crop.tif has a single level (no pyramid): each patch was read at full resolution, {read} px for the "
            f"model's {geometry.pixels} px ({(read / geometry.pixels) ** 2:.0f}x the pixels a pyramid level would "
            "read; see read_and_sample and resize in timings_s); the verdict is the same method, only slower")
    assert report["verdict"] in ("pancreas", "small_intestine", "uncertain")
    assert note in report["notes"] and report["slides"][0]["notes"] == [note]
    assert report["slides"][0]["read_size"] == read and report["slides"][0]["level"] == 0
