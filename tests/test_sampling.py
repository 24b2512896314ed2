"""Patch geometry, allotment, seeding and the pyramid level read."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from PIL import Image

from netorigin.runtime.slide.predictor import Predictor
from netorigin.runtime.slide.regions import Regions, load_annotations
from netorigin.runtime.slide.sampling import PatchGeometry, allot, allot_case, empty_fraction, plan_reads
from netorigin.runtime.slide.slide import Slide


def test_allotment_even_with_remainder_to_first_parts():
    assert allot(100, 3) == [34, 33, 33]
    assert allot_case(100, ["A", "A", "B"]) == [25, 25, 50]
    assert allot_case(100, ["A", "B", "B", "C"]) == [34, 17, 16, 33]
    assert sum(allot_case(7, ["x", "y", "y", "y"])) == 7


@pytest.mark.parametrize("name, vendor, level, downsample", [
    ("svs20x", "aperio", 1, 4.0), ("svs40x", "aperio", 1, 4.0), ("tiff20x", "generic-tiff", 1, 4.0)])
def test_level_choice_and_field_of_view(slides, name, vendor, level, downsample):
    with Slide(slides[name].slide) as slide:
        assert slide.vendor == vendor
        plan = plan_reads(slide, PatchGeometry())
        assert plan.level.index == level and plan.level.downsample == downsample
        assert slide.mpp * plan.level.downsample <= PatchGeometry().target_mpp  # never coarser than needed
        assert abs(plan.field_of_view_um - 497.0) / 497.0 <= 0.005
        assert plan.read_size == round(497.0 / (slide.mpp * downsample))


def test_white_filter_counts_transparent_and_white_pixels():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = 100
    rgba[..., 3] = 255
    assert empty_fraction(Image.fromarray(rgba, "RGBA"), 240) == 0.0
    rgba[:5, :, :3] = 250
    assert empty_fraction(Image.fromarray(rgba, "RGBA"), 240) == 0.5
    rgba[5:, :, 3] = 0  # outside the scanned area
    assert empty_fraction(Image.fromarray(rgba, "RGBA"), 240) == 1.0


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor(tiny_model, device="cpu", seed=7)


def test_same_seed_same_patches_different_seed_different(tiny_model, slides):
    s = slides["svs20x"]
    a = Predictor(tiny_model, device="cpu", seed=7).predict_case([s.slide], [s.annotations])
    b = Predictor(tiny_model, device="cpu", seed=7, read_workers=1).predict_case([s.slide], [s.annotations])
    c = Predictor(tiny_model, device="cpu", seed=8).predict_case([s.slide], [s.annotations])
    assert a.patches == b.patches  # thread count does not change what is sampled
    assert a.verdict.patient_sum == b.verdict.patient_sum  # bitwise
    assert [(p["x"], p["y"]) for p in a.patches] != [(p["x"], p["y"]) for p in c.patches]


def test_patch_centres_lie_in_the_tumour_and_not_in_holes(predictor, slides):
    s = slides["svs40x"]
    result = predictor.predict_case([s.slide], [s.annotations])
    with Slide(s.slide) as slide:
        region = load_annotations(s.annotations, slide).geometry
    centres = np.array([(p["x"] + p["size_level0"] / 2, p["y"] + p["size_level0"] / 2) for p in result.patches])
    assert shapely.contains_xy(region, centres[:, 0], centres[:, 1]).all()
    assert len(result.patches) == predictor.contract.patches_per_case
    # Field of view in microns: 0.25 um/px, read at downsample 4 -> 497 px ~ 1988 level-0 px.
    assert result.patches[0]["size_level0"] * 0.25 == pytest.approx(497.0, rel=0.005)


def test_even_allotment_over_slides_of_a_case(predictor, slides):
    items = [slides["svs20x"], slides["svs40x"], slides["tiff20x"]]
    result = predictor.predict_case([i.slide for i in items], [i.annotations for i in items],
                                    specimens=["A", "A", "B"])
    per_slide = [sum(p["slide"] == k for p in result.patches) for k in range(3)]
    assert per_slide == allot_case(predictor.contract.patches_per_case, ["A", "A", "B"])
    assert [s.patches for s in result.slides] == per_slide


def test_level_zero_reads_the_same_field_of_view(predictor, slides):
    s = slides["svs20x"]
    best = predictor.predict_case([s.slide], [s.annotations])
    level0 = predictor.predict_case([s.slide], [s.annotations], level=0)
    assert level0.slides[0].level == 0 and level0.slides[0].read_size == 994
    assert best.slides[0].field_of_view_um == pytest.approx(level0.slides[0].field_of_view_um, rel=0.005)


def test_reads_above_level_zero_start_on_that_levels_pixel_grid(predictor, slides):
    """OpenSlide blends neighbouring pixels for a level > 0 read off the level's grid (slower, not the stored
    pixels): every read starts on the read level's grid, within half a level pixel of the drawn point."""
    s = slides["svs40x"]
    result = predictor.predict_case([s.slide], [s.annotations])
    assert result.slides[0].level == 1 and result.slides[0].downsample == 4
    assert all(p["x"] % 4 == 0 and p["y"] % 4 == 0 for p in result.patches)
    with Slide(s.slide) as slide:
        plan = plan_reads(slide, PatchGeometry())
        assert plan.top_left(1001.0 + plan.size_level0 / 2, 1002.1 + plan.size_level0 / 2, True) == (1000, 1004)
        stored = np.asarray(slide._handle.read_region((0, 0), 1, (slide.levels[1].width, slide.levels[1].height)))
        x, y = result.patches[0]["x"], result.patches[0]["y"]
        grid = stored[y // 4:y // 4 + plan.read_size, x // 4:x // 4 + plan.read_size]
        np.testing.assert_array_equal(np.asarray(slide.read_region(x, y, plan.level, plan.read_size)), grid)


def test_slides_of_a_case_read_together_give_each_slides_own_patches_in_slide_order(slides):
    from concurrent.futures import ThreadPoolExecutor

    from netorigin.runtime.errors import InsufficientTissueError
    from netorigin.runtime.slide.sampling import sample_case, sample_slide

    items = [slides["svs20x"], slides["svs40x"], slides["tiff20x"]]
    opened = [Slide(i.slide) for i in items]
    try:
        regions = [load_annotations(i.annotations, s) for i, s in zip(items, opened)]
        plans = [plan_reads(s, PatchGeometry()) for s in opened]
        counts = [5, 4, 3]
        with ThreadPoolExecutor(4) as pool:
            together = list(sample_case(opened, regions, counts, PatchGeometry(), 3, pool, plans))
            alone = [p for k, s in enumerate(opened)
                     for p in sample_slide(s, regions[k], counts[k], PatchGeometry(), 3, k, pool, plans[k])]
            assert [(p.slide_index, p.x, p.y) for p in together] == [(p.slide_index, p.x, p.y) for p in alone]
            assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(together, alone))
            # A slide that cannot give its share (its region is blank glass) fails the case after the earlier
            # slides' patches, never silently.
            glass = Regions(shapely.box(0, 0, 400, 400), "annotations")
            got = []
            with pytest.raises(InsufficientTissueError):
                for patch in sample_case(opened, [regions[0], glass, regions[2]], [2, 3, 1], PatchGeometry(), 3,
                                         pool, plans):
                    got.append(patch.slide_index)
            assert got == [0, 0]
    finally:
        for s in opened:
            s.close()
