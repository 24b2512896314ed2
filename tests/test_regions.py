"""QuPath GeoJSON -> tumour region, and tissue detection."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import shapely

from netorigin.runtime.errors import AnnotationError
from netorigin.runtime.regions import RegionRules, load_annotations

SLIDE = SimpleNamespace(dimensions=(10_000, 8_000), offset=(0, 0), path="slide.svs")


def square(x, y, s, cls="Tumor", holes=(), geom_type="Polygon"):
    ring = [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
    coords = [ring] + [list(h) for h in holes]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": coords},
               "properties": {"objectType": "annotation"}}
    if geom_type == "MultiPolygon":
        feature["geometry"] = {"type": "MultiPolygon", "coordinates": [coords]}
    if cls is not None:
        feature["properties"]["classification"] = {"name": cls, "color": [255, 0, 0]}
    return feature


def write(tmp_path, doc, name="a.geojson"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_feature_collection_union_minus_exclusions_with_holes(tmp_path):
    hole = [[1200, 1200], [1400, 1200], [1400, 1400], [1200, 1400], [1200, 1200]]
    doc = {"type": "FeatureCollection", "features": [
        square(1000, 1000, 1000, holes=[hole]), square(3000, 1000, 500, geom_type="MultiPolygon"),
        square(1800, 1800, 100, cls="Exclude"), square(5000, 5000, 500, cls="Stroma")]}
    regions = load_annotations(write(tmp_path, doc), SLIDE)
    assert regions.geometry.area == pytest.approx(1000 ** 2 - 200 ** 2 - 100 ** 2 + 500 ** 2)
    assert not shapely.contains_xy(regions.geometry, 1300, 1300)  # hole respected
    assert not shapely.contains_xy(regions.geometry, 5200, 5200)  # other class ignored
    assert regions.source == "annotations"


def test_bare_list_and_derived_class_and_custom_classes(tmp_path):
    path = write(tmp_path, [square(0, 0, 100, cls="Tumor: Positive"), square(500, 500, 100, cls="Tumour")])
    assert load_annotations(path, SLIDE).geometry.area == pytest.approx(100 ** 2)
    rules = RegionRules(include=("Tumour",), exclude=())
    assert load_annotations(path, SLIDE, rules).geometry.area == pytest.approx(100 ** 2)


def test_single_unclassified_object_is_used(tmp_path):
    regions = load_annotations(write(tmp_path, [square(10, 10, 100, cls=None)]), SLIDE)
    assert regions.geometry.area == pytest.approx(100 ** 2)
    assert "single unclassified" in regions.notes[0]


def test_mrxs_offset_is_added():
    slide = SimpleNamespace(dimensions=(10_000, 8_000), offset=(1234, 567), path="s.mrxs")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), [square(100, 200, 50)])
        minx, miny, maxx, maxy = load_annotations(path, slide).geometry.bounds
    assert (minx, miny, maxx, maxy) == (1334, 767, 1384, 817)


def test_self_intersecting_polygon_is_repaired(tmp_path):
    bowtie = {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
              "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]]]}}
    regions = load_annotations(write(tmp_path, [bowtie]), SLIDE)
    assert regions.geometry.is_valid and regions.geometry.area == pytest.approx(5000)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"type": "Point", "coordinates": [1, 2]}', "not QuPath GeoJSON"),
    ('{"type": "FeatureCollection", "features": []}', "holds no objects"),
    ('[{"type": "Feature", "properties": {}}]', "malformed"),
])
def test_malformed_files(tmp_path, content, message):
    with pytest.raises(AnnotationError, match=message) as exc:
        load_annotations(write(tmp_path, content), SLIDE)
    assert "a.geojson" in str(exc.value)


def test_region_outside_slide_or_without_tumour_class(tmp_path):
    with pytest.raises(AnnotationError, match="outside the slide"):
        load_annotations(write(tmp_path, [square(20_000, 20_000, 100)]), SLIDE)
    with pytest.raises(AnnotationError, match=r"no object of class Tumor \(found: Stroma\)"):
        load_annotations(write(tmp_path, [square(0, 0, 100, cls="Stroma")]), SLIDE)
    with pytest.raises(AnnotationError, match="selects no area"):
        load_annotations(write(tmp_path, [square(0, 0, 100), square(0, 0, 100, cls="Exclude")]), SLIDE)
