"""Fuzzing what users and model files feed the runtime: QuPath GeoJSON, model metadata, confidence levels.

The property everywhere: a valid result, or a NetoriginError whose message is one line naming the file.
Never any other exception (a traceback is a bug, not a user error).

The explicit regression cases at the end of each section pin each bug the fuzzer found to one small input.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.validation import explain_validity

from netorigin.runtime.errors import AnnotationError, ConfigurationError, ModelError, NetoriginError
from netorigin.runtime.model.contract import (
    PREFIX,
    ModelContract,
    decode_metadata,
    encode_metadata,
    load_contract,
    parse_confidence,
    validate_metadata,
)
from netorigin.runtime.slide.regions import RegionRules, load_annotations

# shapely warns (RuntimeWarning) on NaN/overflowing coordinates; the fuzzer makes plenty of those.
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:Generating overly large repr")]

# No example database: keeps the checkout clean (.hypothesis/ is not git-ignored); failures print a reproducer.
FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.data_too_large])

NAN, INF = float("nan"), float("inf")
MODEL_PATH = Path("/models/fuzz model.onnx")  # never read: validate/decode/band only name it in messages


def assert_one_line_naming(exc: BaseException, path: str | Path | None) -> None:
    """A user-facing error: one line (no CR/LF), naming `path` when it has one."""
    message = str(exc)
    assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
    assert message.strip(), "empty message"
    if path is not None:
        assert str(path) in message, f"message does not name {path}: {message!r}"


# --------------------------------------------------------------------------------------------------------------
# Random JSON
# --------------------------------------------------------------------------------------------------------------

EDGE_NUMBERS = [0, -0.0, 1, -1, 0.5, 1e300, -1e300, 1e-300, 5e-324, 2 ** 63, -(2 ** 63), 10 ** 30, NAN, INF, -INF]
EDGE_TEXT = ["", " ", "Tumor", "Feature", "FeatureCollection", "Polygon", "null", "\n", "a\nb", "\x00", "\ud800",
             "é", "1", "NaN"]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from(EDGE_NUMBERS),
    st.text(max_size=12), st.sampled_from(EDGE_TEXT),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=10,
)


# --------------------------------------------------------------------------------------------------------------
# 1. QuPath GeoJSON -> load_annotations
# --------------------------------------------------------------------------------------------------------------

coordinate = st.one_of(
    st.integers(-2_000, 12_000), st.integers(-2_000, 12_000), st.floats(-2e4, 2e4),
    st.sampled_from(EDGE_NUMBERS),
)
position = st.one_of(
    st.tuples(coordinate, coordinate).map(list), st.tuples(coordinate, coordinate).map(list),
    st.lists(coordinate, max_size=4),  # 0, 1, 3, 4 dimensions
    json_values,  # anything at all where a position belongs
)


@st.composite
def rings(draw) -> list:
    kind = draw(st.sampled_from(["square", "square", "closed", "closed", "open", "bowtie", "zero-area", "repeated",
                                 "huge", "raw", "empty"]))
    x, y = draw(st.integers(-1_000, 11_000)), draw(st.integers(-1_000, 9_000))
    s = draw(st.integers(1, 6_000))
    if kind == "square":
        return [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
    if kind == "bowtie":  # self-intersecting: QuPath users draw these; repairable
        return [[x, y], [x + s, y + s], [x + s, y], [x, y + s], [x, y]]
    if kind == "zero-area":  # collinear, or a spike that goes out and back
        return draw(st.sampled_from([[[x, y], [x + s, y], [x + 2 * s, y], [x, y]],
                                     [[x, y], [x + s, y + s], [x + s, y], [x + s, y + s], [x, y]]]))
    if kind == "repeated":
        return [[x, y]] * draw(st.integers(1, 6))
    if kind == "huge":
        big = draw(st.sampled_from([1e300, 1e200, 1.7e308, 1e15, INF, NAN]))
        return [[0, 0], [big, 0], [big, big], [0, big], [0, 0]]
    if kind == "empty":
        return []
    points = draw(st.lists(position if kind == "raw" else st.tuples(coordinate, coordinate).map(list),
                           min_size=0 if kind == "raw" else 3, max_size=7))
    return points + points[:1] if kind == "closed" else points


polygon_coordinates = st.one_of(st.lists(rings(), min_size=0, max_size=3), st.lists(rings(), min_size=1, max_size=1),
                                json_values)
multipolygon_coordinates = st.one_of(st.lists(polygon_coordinates, max_size=3), json_values)


def geometries(depth: int = 0):
    simple = st.one_of(
        st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": polygon_coordinates}),
        st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": polygon_coordinates}),
        st.fixed_dictionaries({"type": st.just("MultiPolygon"), "coordinates": multipolygon_coordinates}),
        st.fixed_dictionaries({"type": st.sampled_from(["Point", "LineString", "MultiPoint", "MultiLineString"]),
                               "coordinates": st.one_of(position, st.lists(position, max_size=4),
                                                        st.lists(st.tuples(coordinate, coordinate).map(list),
                                                                 max_size=2))}),
        st.fixed_dictionaries({"type": st.one_of(json_values, st.sampled_from(["polygon", "Feature", "Bogus"]))},
                              optional={"coordinates": json_values}),
        json_values,  # null, a number, a string, a list where the geometry object belongs
    )
    if depth >= 2:
        return simple
    collection = st.fixed_dictionaries({"type": st.just("GeometryCollection")},
                                       optional={"geometries": st.one_of(st.lists(geometries(depth + 1), max_size=3),
                                                                         json_values)})
    return st.one_of(simple, collection)


class_names = st.one_of(
    st.sampled_from(["Tumor", "tumor", "TUMOR", "Tumor: Positive", "Tumour", "Exclude", "Ignore*", "Ignore this",
                     "Stift", "Artefakt", "Stroma", "Other", ""]),
    st.none(), st.text(max_size=12), json_values,
)
classification = st.one_of(
    st.fixed_dictionaries({"name": class_names}, optional={"color": st.lists(st.integers(0, 255), max_size=3)}),
    class_names,  # QuPath 0.1 wrote the name as a bare string
    json_values,
)
properties = st.one_of(
    st.fixed_dictionaries({"objectType": st.sampled_from(["annotation", "detection"])},
                          optional={"classification": classification, "isLocked": st.booleans()}),
    st.fixed_dictionaries({"classification": classification}),
    json_values,
)
features = st.one_of(
    st.fixed_dictionaries({"type": st.just("Feature"), "geometry": geometries()}, optional={"properties": properties}),
    st.fixed_dictionaries({"type": st.just("Feature"), "geometry": geometries()}, optional={"properties": properties}),
    st.fixed_dictionaries({"type": st.just("Feature")}, optional={"properties": properties}),  # no geometry
    json_values,
)
documents = st.one_of(
    st.fixed_dictionaries({"type": st.just("FeatureCollection"), "features": st.lists(features, max_size=5)}),
    st.fixed_dictionaries({"type": st.just("FeatureCollection")},
                          optional={"features": json_values, "bbox": json_values}),
    features,
    st.lists(features, max_size=5),
    json_values,
)


@st.composite
def annotation_files(draw) -> bytes:
    """A serialised document, sometimes damaged: truncated, non-UTF-8, BOM, very deep, huge integer, binary."""
    data = json.dumps(draw(documents), allow_nan=True).encode("ascii")  # ensure_ascii: lone surrogates -> \ud800
    damage = draw(st.sampled_from(["none"] * 8 + ["truncate", "non-utf8", "bom", "deep", "bigint", "blank",
                                                  "binary"]))
    if damage == "truncate":
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    if damage == "non-utf8":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"])) + data[at:]
    if damage == "bom":
        return b"\xef\xbb\xbf" + data
    if damage == "deep":
        depth = draw(st.sampled_from([50, 5_000, 100_000]))
        return b"[" * depth + data + b"]" * depth
    if damage == "bigint":  # Python refuses int() of > 4300 digits
        return b'{"type": "FeatureCollection", "features": [], "n": ' + b"7" * draw(st.integers(4_301, 6_000)) + b"}"
    if damage == "blank":
        return draw(st.sampled_from([b"", b" ", b"\n\t\r\n"]))
    if damage == "binary":
        return draw(st.binary(max_size=64))
    return data


slides = st.builds(
    lambda dims, offset: SimpleNamespace(dimensions=dims, offset=offset, path="slide.svs"),
    st.sampled_from([(10_000, 8_000), (10_000, 8_000), (1, 1), (120_000, 90_000)]),
    st.sampled_from([(0, 0), (0, 0), (1234, 567), (50_000, 50_000)]),
)
rules = st.sampled_from([RegionRules(), RegionRules(include=("Stroma", "Other*"), exclude=()),
                         RegionRules(include=("Tumor",), exclude=("Tumor: Positive",))])


@pytest.fixture(scope="module")
def annotation_path(tmp_path_factory) -> Path:
    """One file per module, rewritten by each example (a space in the name: the message must still name it)."""
    return tmp_path_factory.mktemp("fuzz") / "case 1 annotations.geojson"


def check_load_annotations(path: Path, slide, region_rules: RegionRules) -> None:
    try:
        regions = load_annotations(path, slide, region_rules)
    except NetoriginError as exc:
        assert isinstance(exc, AnnotationError), f"{type(exc).__name__}: {exc}"
        assert_one_line_naming(exc, path)
        return
    geometry = regions.geometry
    assert regions.source == "annotations"
    assert not geometry.is_empty and geometry.area > 0
    assert geometry.is_valid, explain_validity(geometry)
    assert all(isinstance(p, shapely.Polygon) and p.area > 0 for p in regions.polygons)
    minx, miny, maxx, maxy = geometry.bounds
    assert all(math.isfinite(v) for v in (minx, miny, maxx, maxy)), geometry.bounds
    width, height = slide.dimensions
    tol = 1e-9 * max(width, height)
    assert -tol <= minx <= maxx <= width + tol and -tol <= miny <= maxy <= height + tol, (geometry.bounds,
                                                                                          slide.dimensions)
    assert all(isinstance(note, str) and "\n" not in note for note in regions.notes)


# Found the load_annotations bugs pinned in test_annotation_regressions (AttributeError on
# non-dict properties / non-string class names, GEOSException on NaN/Infinity coordinates, RecursionError and
# ValueError from json.loads, multi-line message for a class name with a newline; rarer, seen in runs of 4,000+
# examples: the one-point LineString message, the collapsed shell with a hole, the 1e300 region off the slide).
@settings(FUZZ, max_examples=400)
@given(data=annotation_files(), slide=slides, region_rules=rules)
def test_fuzz_load_annotations(annotation_path, data, slide, region_rules):
    annotation_path.write_bytes(data)
    check_load_annotations(annotation_path, slide, region_rules)


@settings(FUZZ, max_examples=150)
@given(squares=st.lists(st.tuples(st.integers(-3_000, 12_000), st.integers(-3_000, 10_000), st.integers(1, 5_000),
                                  st.sampled_from(["Tumor", "Tumor: Positive", "Exclude", "Stroma", None]),
                                  st.booleans()), min_size=1, max_size=6),
       slide=slides)
def test_fuzz_well_formed_annotations(annotation_path, squares, slide):
    """Well-formed QuPath exports (squares and bowties of known classes): always a clean outcome."""
    feats = []
    for x, y, s, cls, bowtie in squares:
        ring = ([[x, y], [x + s, y + s], [x + s, y], [x, y + s], [x, y]] if bowtie
                else [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]])
        props = {"objectType": "annotation"}
        if cls is not None:
            props["classification"] = {"name": cls, "color": [255, 0, 0]}
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props})
    annotation_path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    check_load_annotations(annotation_path, slide, RegionRules())


SQUARE = [[[100, 100], [900, 100], [900, 900], [100, 900], [100, 100]]]


def _feature(coordinates=SQUARE, properties=None, geometry_type="Polygon"):
    properties = {"classification": {"name": "Tumor"}} if properties is None else properties
    return {"type": "Feature", "geometry": {"type": geometry_type, "coordinates": coordinates},
            "properties": properties}


ANNOTATION_CASES = {
    # Each was a bug the fuzzer found; the id says what went wrong.
    "deep-nesting-RecursionError": "[" * 100_000 + "]" * 100_000,
    "int-over-4300-digits-ValueError": '{"type": "FeatureCollection", "n": ' + "7" * 5_000 + "}",
    "properties-is-a-list-AttributeError": json.dumps([_feature(properties=["Tumor"])]),
    "properties-is-a-string-AttributeError": json.dumps([_feature(properties="Tumor")]),
    "class-name-is-a-number-AttributeError": json.dumps([_feature(properties={"classification": {"name": 5}})]),
    "class-name-is-true-AttributeError": json.dumps([_feature(properties={"classification": {"name": True}})]),
    "class-name-is-an-object-AttributeError": json.dumps([_feature(properties={"classification": {"name": {}}}),
                                                          _feature(properties={"classification": {"name": {"a": 1}}})]),
    "nan-coordinate-GEOSException": json.dumps([_feature([[[0, 0], [NAN, 0], [10, 10], [0, 0]]])]),
    "infinite-coordinate-GEOSException": json.dumps([_feature([[[0, 0], [INF, 0], [INF, INF], [0, INF], [0, 0]]])]),
    "one-point-line-two-line-message": json.dumps([_feature([[0, 0]], geometry_type="LineString")]),
    "point-shell-with-hole-GEOSException": json.dumps([_feature([[[0, -1], [0, -1], [0, -1]], SQUARE[0]])]),
    "1e300-coordinates-region-leaves-the-slide": json.dumps([_feature([
        [[1, -1], [3, -1], [3, 1], [1, 1], [1, -1]], [[0, 0], [1e300, 0], [1e300, 1e300], [0, 1e300], [0, 0]],
        [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]])]),
    "class-name-with-newline-two-line-message": json.dumps([_feature(properties={"classification":
                                                                                  {"name": "Stroma\nx"}})]),
}


# Each case was a traceback or a two-line message: json.loads raising RecursionError / ValueError; .get on
# non-dict properties and .lower() on non-string class names (AttributeError); shapely's message for a one-point
# LineString ending in a newline; make_valid raising GEOSException on NaN/Infinity and on a shell collapsed to one
# point with a hole; coordinates near 1e300 (areas overflow to inf) making GEOS overlays return garbage; class
# names copied into the message unescaped.
@pytest.mark.parametrize("text", list(ANNOTATION_CASES.values()), ids=list(ANNOTATION_CASES))
def test_annotation_regressions(annotation_path, text):
    annotation_path.write_text(text, encoding="utf-8")
    check_load_annotations(annotation_path, SimpleNamespace(dimensions=(10_000, 8_000), offset=(0, 0),
                                                            path="slide.svs"), RegionRules())


# Was: a Tumor square reaching 1e300 (it covers the whole slide) united with a small Tumor square gives
# about half the slide (40,345,000 px^2 of 80,000,000): shapely.union_all overflows (regions.py:136), silently.
def test_huge_coordinates_do_not_corrupt_the_region(annotation_path):
    big = [[[0, 0], [1e300, 0], [1e300, 1e300], [0, 1e300], [0, 0]]]
    small = [[[-100, -100], [300, -100], [300, 300], [-100, 300], [-100, -100]]]
    annotation_path.write_text(json.dumps([_feature(big), _feature(small)]))
    slide = SimpleNamespace(dimensions=(10_000, 8_000), offset=(0, 0), path="slide.svs")
    try:
        regions = load_annotations(annotation_path, slide)
    except AnnotationError as exc:  # refusing absurd coordinates is fine too
        assert_one_line_naming(exc, annotation_path)
    else:
        assert regions.geometry.area == pytest.approx(10_000 * 8_000)


@pytest.mark.parametrize("text, fragment", [
    ("\ufeff" + json.dumps([_feature()]), "not valid JSON"),  # a BOM is refused, with a one-line reason
    (json.dumps([_feature([[[0, 0], [1e300, 0], [1e300, 1e300], [0, 1e300], [0, 0]]])]), "beyond 1e\\+09 px"),
    (json.dumps([_feature([])]), "no annotation object of class Tumor"),
    (json.dumps([{"type": "Feature", "geometry": {"type": "GeometryCollection", "geometries": [
        {"type": "Polygon", "coordinates": SQUARE}]}, "properties": {"classification": {"name": "Tumor"}}}]),
     None),  # polygons inside a GeometryCollection are used
    (json.dumps([_feature([[[0, 0], [10, 0], [20, 0], [0, 0]]])]), "cannot be repaired"),
    (json.dumps([_feature([SQUARE], geometry_type="MultiPolygon")]), None),
    (b"\xff\xfe[]", "not valid JSON"),
])
def test_annotation_edge_cases(annotation_path, text, fragment):
    if isinstance(text, bytes):
        annotation_path.write_bytes(text)
    else:
        annotation_path.write_text(text, encoding="utf-8")
    slide = SimpleNamespace(dimensions=(10_000, 8_000), offset=(0, 0), path="slide.svs")
    if fragment is None:
        check_load_annotations(annotation_path, slide, RegionRules())
    else:
        with pytest.raises(AnnotationError, match=fragment) as exc:
            load_annotations(annotation_path, slide)
        assert_one_line_naming(exc.value, annotation_path)


# --------------------------------------------------------------------------------------------------------------
# 2. Model metadata -> decode_metadata / validate_metadata
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_meta(tiny_model) -> dict:
    meta = load_contract(tiny_model).meta
    validate_metadata(meta, tiny_model)  # the starting point is valid
    return meta


def _paths(value, prefix=()) -> list[tuple]:
    """Every key/index path into a nested JSON value (the root excluded)."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append(prefix + (key,))
        out.extend(_paths(child, prefix + (key,)))
    return out


def _parent(root, path):
    for key in path[:-1]:
        if isinstance(root, dict) and key in root or isinstance(root, list) and isinstance(key, int) \
                and -len(root) <= key < len(root):
            root = root[key]
        else:
            return None
    return root


metadata_keys = st.one_of(
    st.sampled_from([PREFIX + "schema", PREFIX + "extra", PREFIX, "other.key", "", PREFIX + "\n"]),
    st.text(max_size=10), st.text(max_size=10).map(lambda s: PREFIX + s),
)


@st.composite
def mutated_metadata(draw, meta: dict) -> dict:
    """`meta` with 1-4 random edits: a value replaced by random JSON, a key deleted, a key added."""
    meta = copy.deepcopy(meta)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(meta)
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "top-level"]))
        if op == "top-level":
            meta[draw(metadata_keys)] = draw(json_values)
            continue
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(meta, path)
        if parent is None:
            continue
        key = path[-1]
        if op == "replace":
            parent[key] = draw(st.one_of(json_values, st.sampled_from(EDGE_NUMBERS)))
        elif op == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent.insert(draw(st.integers(0, len(parent))), draw(json_values))
    return meta


def check_validate(meta: dict) -> bool:
    try:
        validate_metadata(meta, MODEL_PATH)
    except ModelError as exc:
        assert_one_line_naming(exc, MODEL_PATH)
        return False
    return True


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_fuzz_validate_metadata(valid_meta, data):
    meta = data.draw(mutated_metadata(valid_meta))
    check_validate(meta)
    # What scanner software reads: the same metadata through the ONNX string encoding.
    props = encode_metadata(meta)
    try:
        decoded = decode_metadata(props, MODEL_PATH)
    except ModelError as exc:  # NaN / Infinity are not JSON: refused when read back
        assert_one_line_naming(exc, MODEL_PATH)
        assert any(isinstance(v, float) and not math.isfinite(v) for v in _all_numbers(meta))
        return
    assert set(decoded) == {k for k in meta if k.startswith(PREFIX)}
    check_validate(decoded)


def _all_numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for child in value.values():
            yield from _all_numbers(child)
    elif isinstance(value, list):
        for child in value:
            yield from _all_numbers(child)


def check_usable(meta: dict) -> None:
    """A model whose metadata validates can be used: accessors work, the default band lookup succeeds."""
    contract = ModelContract(path=MODEL_PATH, model_bytes=b"", meta=meta)
    assert all(math.isfinite(x) for x in _all_numbers({k: v for k, v in meta.items() if k != PREFIX + "provenance"})
               ), "non-finite number accepted by the contract"
    assert len(contract.sha256) == 64 and all(c in "0123456789abcdef" for c in contract.sha256), contract.sha256
    assert contract.patches_per_case >= 1
    assert set(contract.classes) == {"0", "1"}
    contract.patch, contract.precision, contract.is_demo  # noqa: B018
    band = contract.band(None)
    assert band is None if not contract.bands else band in contract.bands


# Found: schema-valid metadata that the runtime could not use -- bands present but default_confidence null
# (contract.py:133 abs(band.c - None) -> TypeError); default_confidence not a stored level, e.g. 0.3 or NaN
# (ConfigurationError "confidence None is not a stored level"); NaN/Infinity accepted for every number
# (field_of_view_um, bands c/lower/upper, default_confidence, scale, mean, std); sha256 with a trailing "\n"
# matches the pattern ^[0-9a-f]{64}$ (jsonschema uses re.search, where $ matches before a final newline).
@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_fuzz_validated_metadata_is_usable(valid_meta, data):
    meta = data.draw(mutated_metadata(valid_meta))
    if check_validate(meta):
        check_usable(meta)


@st.composite
def metadata_props(draw) -> dict[str, str]:
    """ONNX metadata_props as a crafted file can hold them: any key, any string value."""
    def value():
        return st.one_of(
            json_values.map(lambda v: json.dumps(v, allow_nan=True)),
            json_values.map(lambda v: json.dumps(v, allow_nan=True)).map(lambda s: s[: len(s) // 2]),  # truncated
            st.text(max_size=20),
            st.sampled_from(["", "NaN", "-Infinity", "[" * 5_000, "7" * 5_000, '{"a": ' * 3_000, "1" * 4_300,
                             "\ufeff1", "0x10", "01", "1e999"]),
        )
    return draw(st.dictionaries(metadata_keys, value(), max_size=5))


# Found: json.loads in decode_metadata raises RecursionError (deeply nested value) and ValueError (integer of
# more than 4300 digits), neither a ModelError; contract.py:60 puts the key unescaped in the message, so a key
# with a newline gives a two-line ModelError.
@settings(FUZZ, max_examples=300)
@given(props=metadata_props())
def test_fuzz_decode_metadata(props):
    try:
        meta = decode_metadata(props, MODEL_PATH)
    except ModelError as exc:
        assert_one_line_naming(exc, MODEL_PATH)
        return
    assert set(meta) == {k for k in props if k.startswith(PREFIX)}
    check_validate(meta)


@pytest.mark.parametrize("props", [
    {PREFIX + "bands": "[" * 100_000},  # RecursionError
    {PREFIX + "case": '{"patches_per_case": ' + "7" * 5_000 + "}"},  # ValueError: int string conversion limit
    {PREFIX + "x\ny": "{oops"},  # two-line ModelError
], ids=["deep-nesting-RecursionError", "int-over-4300-digits-ValueError", "key-with-newline-two-line-message"])
def test_decode_metadata_regressions(props):
    try:
        decode_metadata(props, MODEL_PATH)
    except ModelError as exc:
        assert_one_line_naming(exc, MODEL_PATH)


@pytest.mark.parametrize("edit", [
    {PREFIX + "default_confidence": None},  # bands stored, no default: band(None) -> TypeError
    {PREFIX + "default_confidence": 0.3},  # default not a stored level: band(None) -> ConfigurationError
    {PREFIX + "default_confidence": NAN},
    {PREFIX + "bands": [{"c": 0.875, "pi_inside": 0, "lower": NAN, "upper": INF}]},
    {PREFIX + "sha256": "a" * 64 + "\n"},
], ids=["null-default-TypeError", "default-not-stored", "nan-default", "nan-band", "sha256-trailing-newline"])
def test_validated_metadata_regressions(valid_meta, edit):
    meta = dict(valid_meta, **edit)
    if check_validate(meta):
        check_usable(meta)


# --------------------------------------------------------------------------------------------------------------
# 3. Confidence levels: parse_confidence and ModelContract.band
# --------------------------------------------------------------------------------------------------------------

huge_int = st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
confidence_text = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789./-+eE_ \t\nxinfa", max_size=12),
    st.floats().map(repr),
    st.builds(lambda k, o: f"{k}/{o}", st.integers(-20, 20), st.integers(-20, 20)),
    st.builds(lambda k, o: f"{k}/{o}", huge_int, huge_int),
    st.builds(lambda k, o: f"{k}/{o}", huge_int, st.integers(1, 9)),
    st.builds(lambda x, ws: f"{ws}{x!r}{ws}", st.floats(0, 1), st.sampled_from(["", " ", "\t", "\n", "\r\n"])),
    st.builds(lambda k, o, ws: f"{ws}{k}/{o}{ws}", st.integers(0, 8), st.just(8), st.sampled_from(["", " ", "\n"])),
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e400", "1" * 400 + "/1", "7/8", "0.875", " 7 / 8 ", "7//8",
                     "1/0", "0/0", "", "/", "½", "٧/٨", "0.875\n", "0.3\n", "1_0/8"]),
)


# Found: parse_confidence returned nan/inf for "nan", "inf", "1e400" (contract.py:146, no finiteness check)
# and raises OverflowError for a fraction whose value overflows a float, e.g. "1"*400 + "/1" (contract.py:145).
@settings(FUZZ, max_examples=400)
@given(text=confidence_text)
def test_fuzz_parse_confidence(text):
    try:
        value = parse_confidence(text)
    except ConfigurationError as exc:
        assert_one_line_naming(exc, None)
        return
    assert isinstance(value, float) and math.isfinite(value), (text, value)


@pytest.mark.parametrize("text", ["1" * 400 + "/1", "nan", "inf", "1e400"])
def test_parse_confidence_regressions(text):
    try:
        value = parse_confidence(text)
    except ConfigurationError as exc:
        assert_one_line_naming(exc, None)
    else:
        assert math.isfinite(value)


confidences = st.one_of(
    st.none(), st.floats(), st.floats(0, 1), st.sampled_from([k / 8 for k in range(9)]), confidence_text,
    st.sampled_from([f"{k}/8" for k in range(9)] + [f"{2 * k}/16" for k in range(9)]),
)


def check_band(contract: ModelContract, confidence) -> None:
    try:
        band = contract.band(confidence)
    except ConfigurationError as exc:
        assert_one_line_naming(exc, None)
        stored = {b.c for b in contract.bands}
        assert confidence is not None, f"the default level was refused: {exc}"
        if stored:  # refused only when it really is not a stored level
            try:
                wanted = parse_confidence(confidence)
            except ConfigurationError:
                return
            assert not any(abs(c - wanted) < 1e-9 for c in stored), (confidence, wanted)
        return
    if not contract.bands:
        assert band is None and confidence is None
        return
    wanted = contract.default_confidence if confidence is None else parse_confidence(confidence)
    assert band in contract.bands and abs(band.c - wanted) < 1e-9


# Found: band("1"*400 + "/1") -> OverflowError (parse_confidence, contract.py:145); band("0.3\n") -> a
# two-line ConfigurationError (contract.py:136 formats the raw option with str(), not repr()).
@settings(FUZZ, max_examples=300)
@given(confidence=confidences, no_bands=st.booleans())
def test_fuzz_band_lookup(valid_meta, confidence, no_bands):
    meta = valid_meta
    if no_bands:  # an export made with --no-bands
        meta = dict(valid_meta, **{PREFIX + "bands": [], PREFIX + "default_confidence": None})
    check_band(ModelContract(path=MODEL_PATH, model_bytes=b"", meta=meta), confidence)


@pytest.mark.parametrize("confidence", ["1" * 400 + "/1", "0.3\n"], ids=["overflow", "newline"])
def test_band_regressions(valid_meta, confidence):
    check_band(ModelContract(path=MODEL_PATH, model_bytes=b"", meta=valid_meta), confidence)


def test_band_lookup_stored_levels(valid_meta):
    contract = ModelContract(path=MODEL_PATH, model_bytes=b"", meta=valid_meta)
    for band in contract.bands:
        assert contract.band(band.c) == band
        assert contract.band(f" {round(band.c * 8)}/8 ") == band
    assert contract.band(None).c == contract.default_confidence
