"""QuPath GeoJSON -> tumour region, and tissue detection."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import shapely

from netorigin.runtime.errors import AnnotationError
from netorigin.runtime.slide.regions import RegionRules, load_annotations

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
    with pytest.raises(AnnotationError, match=r"no annotation object of class Tumor \(found: Stroma\)"):
        load_annotations(write(tmp_path, [square(0, 0, 100, cls="Stroma")]), SLIDE)
    with pytest.raises(AnnotationError, match="selects no area"):
        load_annotations(write(tmp_path, [square(0, 0, 100), square(0, 0, 100, cls="Exclude")]), SLIDE)


def as_type(feature, object_type=None, legacy_id=None):
    feature = json.loads(json.dumps(feature))
    if object_type is None:
        feature["properties"].pop("objectType")
    else:
        feature["properties"]["objectType"] = object_type
    if legacy_id is not None:
        feature["id"] = legacy_id
    return feature


def test_detections_and_cells_are_ignored_unless_asked_for(tmp_path):
    nuclei = [as_type(square(5000 + 20 * i, 5000, 10), "cell") for i in range(50)]
    tiles = [as_type(square(7000, 7000, 300), "detection")]
    path = write(tmp_path, [square(0, 0, 100)] + nuclei + tiles)
    default = load_annotations(path, SLIDE)
    assert default.geometry.area == pytest.approx(100 ** 2)
    assert "ignored 50 cell object(s), 1 detection object(s)" in " ".join(default.notes)
    cells = load_annotations(path, SLIDE, RegionRules(object_types=("annotation", "cell")))
    assert cells.geometry.area == pytest.approx(100 ** 2 + 50 * 10 ** 2)
    only_detections = load_annotations(path, SLIDE, RegionRules(object_types=("detection",)))
    assert only_detections.geometry.area == pytest.approx(300 ** 2)


def test_qupath_02_ids_and_plain_geojson_object_types(tmp_path):
    legacy_cell = as_type(square(2000, 2000, 100), legacy_id="PathCellObject")
    legacy_annotation = as_type(square(0, 0, 100), legacy_id="PathAnnotationObject")
    plain = as_type(square(4000, 4000, 100))  # no objectType, no id: another tool's GeoJSON is an annotation
    regions = load_annotations(write(tmp_path, [legacy_cell, legacy_annotation, plain]), SLIDE)
    assert regions.geometry.area == pytest.approx(2 * 100 ** 2)
    assert not shapely.contains_xy(regions.geometry, 2050, 2050)


def test_only_detections_of_the_class_is_a_clear_error(tmp_path):
    path = write(tmp_path, [as_type(square(0, 0, 100), "detection")])
    with pytest.raises(AnnotationError, match=r"no annotation object of class Tumor \(found: no area objects\)"):
        load_annotations(path, SLIDE)


def test_geometry_collection_contributes_its_polygons(tmp_path):
    feature = square(0, 0, 100)
    polygon = feature["geometry"]
    feature["geometry"] = {"type": "GeometryCollection", "geometries": [
        polygon, {"type": "LineString", "coordinates": [[0, 0], [900, 900]]},
        {"type": "GeometryCollection", "geometries": [
            {"type": "Polygon", "coordinates": [[[500, 500], [700, 500], [700, 700], [500, 700], [500, 500]]]}]}]}
    regions = load_annotations(write(tmp_path, [feature]), SLIDE)
    assert regions.geometry.area == pytest.approx(100 ** 2 + 200 ** 2)


@pytest.mark.parametrize("coordinate, message", [
    (float("nan"), "not valid JSON"), (1e300, "beyond 1e\\+09 px"), (2e9, "beyond 1e\\+09 px")])
def test_corrupt_coordinates_are_refused(tmp_path, coordinate, message):
    feature = square(0, 0, 100)
    feature["geometry"]["coordinates"][0][2] = [coordinate, coordinate]
    with pytest.raises(AnnotationError, match=message) as exc:
        load_annotations(write(tmp_path, json.dumps([feature])), SLIDE)
    assert "\n" not in str(exc.value) and "a.geojson" in str(exc.value)


@pytest.mark.parametrize("where, spelling", [
    ("objectType", "cell"),          # QuPath 0.4+
    ("object_type", "cell"),         # QuPath 0.3
    ("objectType", "tmaCore"),       # QuPath 0.4+ TMA cores
    ("object_type", "tma_core"),
])
def test_object_type_in_every_qupath_spelling(tmp_path, where, spelling):
    other = square(2000, 2000, 100)
    other["properties"].pop("objectType")
    other["properties"][where] = spelling
    path = write(tmp_path, [square(0, 0, 100), other])
    assert load_annotations(path, SLIDE).geometry.area == pytest.approx(100 ** 2)
    wanted = "cell" if spelling == "cell" else "tma_core"
    both = load_annotations(path, SLIDE, RegionRules(object_types=("annotation", wanted)))
    assert both.geometry.area == pytest.approx(2 * 100 ** 2)


def test_exclusions_apply_whatever_object_types_are_chosen(tmp_path):
    tumour_cell = as_type(square(0, 0, 1000), "cell")
    pen_mark = square(0, 0, 500, cls="Exclude")  # an annotation
    path = write(tmp_path, [tumour_cell, pen_mark])
    regions = load_annotations(path, SLIDE, RegionRules(object_types=("cell",)))
    assert regions.geometry.area == pytest.approx(1000 ** 2 - 500 ** 2)


def test_non_finite_coordinates_that_json_accepts_are_refused(tmp_path):
    feature = square(0, 0, 100)
    text = json.dumps([feature]).replace("[100, 100]", "[1e999, 100]")  # json reads 1e999 as infinity
    with pytest.raises(AnnotationError, match="non-finite coordinates"):
        load_annotations(write(tmp_path, text), SLIDE)
