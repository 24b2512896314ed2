"""Tumour regions: QuPath GeoJSON annotations, or tissue detection when there are none.

Regions are shapely geometries in level-0 slide pixels (MRXS offset already added).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import shapely.affinity
import shapely.errors
from shapely.geometry import shape
from shapely.validation import explain_validity, make_valid

from ..errors import AnnotationError, InsufficientTissueError, printable
from ..model.contract import refuse_json_constant
from .slide import Slide

DEFAULT_INCLUDE = ("Tumor",)
# Pen marks and large artefacts; the reference lab used German names for them.
DEFAULT_EXCLUDE = ("Exclude", "Ignore*", "Artefact", "Artifact", "Stift", "Artefakt")
# QuPath object types. Tumour regions are annotations; detections and cells (thousands of nuclei polygons
# that may also be classified Tumor) are used only when asked for.
OBJECT_TYPES = ("annotation", "detection", "cell", "tile", "tma_core")
DEFAULT_OBJECT_TYPES = ("annotation",)
# Where QuPath wrote the type: properties.objectType (0.4+), properties.object_type (0.3), properties.type; QuPath
# 0.2 wrote it as the feature's id. Spellings vary ("tmaCore", "tma_core"): compared lower-case without "_".
_TYPE_PROPERTIES = ("objectType", "object_type", "type")
_TYPE_NAMES = {"annotation": "annotation", "detection": "detection", "cell": "cell", "tile": "tile",
               "tmacore": "tma_core", "pathannotationobject": "annotation", "pathdetectionobject": "detection",
               "pathcellobject": "cell", "pathtileobject": "tile", "tmacoreobject": "tma_core"}
# No scanner makes slides a billion pixels wide: larger coordinates are corrupt, not tissue.
MAX_COORDINATE = 1e9


@dataclass(frozen=True)
class RegionRules:
    """Which QuPath objects are tumour and which are cut out: object types, then classes (case-insensitive;
    a trailing * is a prefix)."""

    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    object_types: tuple[str, ...] = DEFAULT_OBJECT_TYPES

    @staticmethod
    def _matches(name: str | None, patterns: tuple[str, ...]) -> bool:
        if not name:
            return False
        name = name.lower()
        base = name.split(":")[0].strip()  # derived classes are written "Tumor: Positive": the base decides
        for pattern in patterns:
            pattern = pattern.lower()
            if pattern.endswith("*") and name.startswith(pattern[:-1]):
                return True
            if name == pattern or base == pattern:
                return True
        return False

    def as_dict(self) -> dict[str, list[str]]:
        """As reports record it (and batch resume compares it)."""
        return {"include": list(self.include), "exclude": list(self.exclude), "object_types": list(self.object_types)}

    def included(self, name: str | None) -> bool:
        return self._matches(name, self.include)

    def excluded(self, name: str | None) -> bool:
        return self._matches(name, self.exclude)


@dataclass
class Regions:
    """Where to sample: the area in level-0 pixels and how it was found."""

    geometry: shapely.Geometry
    source: str  # "annotations" or "tissue-detection"
    notes: list[str] = field(default_factory=list)
    origin: Path | None = None  # the annotation file, named in errors about its polygons

    @property
    def polygons(self) -> list[shapely.Polygon]:
        geom = self.geometry
        return list(geom.geoms) if hasattr(geom, "geoms") else [geom]


def _features(doc, path: Path) -> list[dict]:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    elif isinstance(doc, list):
        feats = doc
    else:
        raise AnnotationError("not QuPath GeoJSON (expected a FeatureCollection, a Feature or a list of "
                              "Features)", path)
    if not isinstance(feats, list) or not all(isinstance(f, dict) and "geometry" in f for f in feats):
        raise AnnotationError("GeoJSON features are malformed (each needs a 'geometry')", path)
    if not feats:
        raise AnnotationError("annotation file holds no objects", path)
    return feats


def _properties(feature: dict) -> dict:
    props = feature.get("properties")
    return props if isinstance(props, dict) else {}


def _class_name(feature: dict) -> str | None:
    cls = _properties(feature).get("classification")
    if isinstance(cls, dict):
        cls = cls.get("name")
    return cls if isinstance(cls, str) else None


def object_type(feature: dict) -> str:
    """QuPath's object type, wherever its version wrote it; GeoJSON of other tools counts as an annotation.
    An unknown type is returned as written (printable), so it is never mistaken for an annotation."""
    props = _properties(feature)
    for raw in (props.get(key) for key in _TYPE_PROPERTIES):
        if isinstance(raw, str) and raw:
            return _TYPE_NAMES.get(raw.replace("_", "").lower(), printable(raw, 30))
    legacy = feature.get("id")  # QuPath 0.2's type name; later versions put a UUID here
    if isinstance(legacy, str):
        return _TYPE_NAMES.get(legacy.lower(), "annotation")
    return "annotation"


def _polygons_in(geom: shapely.Geometry) -> list[shapely.Geometry]:
    """The areal parts of any geometry, GeometryCollections included (points and lines carry no area)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return [geom]
    if geom.geom_type == "GeometryCollection":
        return [p for part in geom.geoms for p in _polygons_in(part)]
    return []


def _area_geometry(feature: dict, path: Path, index: int) -> shapely.Geometry | None:
    try:
        geom = shape(feature["geometry"])
    except Exception as exc:  # shapely and its GeoJSON reader raise several types for malformed coordinates
        raise AnnotationError(f"object {index} has an invalid geometry ({printable(exc, 120)})", path) from None
    parts = _polygons_in(geom)
    if not parts:
        return None
    coords = shapely.get_coordinates(parts)
    if not np.isfinite(coords).all():
        raise AnnotationError(f"object {index} has non-finite coordinates (NaN or infinity)", path)
    if coords.size and np.abs(coords).max() > MAX_COORDINATE:
        raise AnnotationError(f"object {index} has coordinates beyond {MAX_COORDINATE:.0e} px (corrupt file)", path)
    geom = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    if not geom.is_valid:
        reason = printable(explain_validity(geom))
        polys = _polygons_in(make_valid(geom))
        if not polys or shapely.union_all(polys).area <= 0:
            raise AnnotationError(f"object {index} is an invalid polygon that cannot be repaired ({reason})",
                                  path)
        geom = shapely.union_all(polys)
    return geom


def _read_geojson(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise AnnotationError("annotation file is empty", path)
        return json.loads(text, parse_constant=refuse_json_constant)
    except FileNotFoundError:
        raise AnnotationError("annotation file not found", path) from None
    except IsADirectoryError:
        raise AnnotationError("is a directory, not an annotation file", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"not valid JSON ({printable(getattr(exc, 'msg', exc))})", path) from None
    except RecursionError:
        raise AnnotationError("not valid JSON (nested too deeply)", path) from None
    except ValueError as exc:  # e.g. an integer literal of thousands of digits, NaN
        raise AnnotationError(f"not valid JSON ({printable(exc)})", path) from None
    except OSError as exc:
        raise AnnotationError(f"cannot read annotation file ({exc.strerror})", path) from None


def load_annotations(path: str | Path, slide: Slide, rules: RegionRules = RegionRules()) -> Regions:
    """Union of tumour-class objects minus exclusion-class objects, offset for MRXS, checked against the slide."""
    path = Path(path)
    feats = _features(_read_geojson(path), path)
    try:
        return _regions(feats, path, slide, rules)
    except shapely.errors.GEOSException as exc:
        raise AnnotationError(f"geometry cannot be processed ({printable(exc, 120)})", path) from None


def _regions(feats: list[dict], path: Path, slide: Slide, rules: RegionRules) -> Regions:
    notes = []
    kinds = [object_type(f) for f in feats]
    ignored = Counter(k for k in kinds if k not in rules.object_types)
    if ignored:
        notes.append("ignored " + ", ".join(f"{n} {k} object(s)" for k, n in sorted(ignored.items())) +
                     f" as tumour (only {'/'.join(rules.object_types)} objects are)")
    # Exclusion classes cut out of the region whatever their object type (pen marks are annotations even when
    # cells are the tumour objects); only tumour objects are restricted to the chosen types.
    classified = [(_class_name(f), k) for f, k in zip(feats, kinds)]
    areas = [(name, k, _area_geometry(f, path, i)) for i, (f, (name, k)) in enumerate(zip(feats, classified))
             if k in rules.object_types or rules.excluded(name)]
    exclude = [g for name, _, g in areas if g is not None and not g.is_empty and rules.excluded(name)]
    areas = [(name, g) for name, k, g in areas if k in rules.object_types and g is not None and not g.is_empty]
    include = [g for name, g in areas if rules.included(name)]
    if not include and len(areas) == 1 and areas[0][0] is None:
        include = [areas[0][1]]
        notes.append("single unclassified object used as the tumour region")
    if not include:
        found = sorted({printable(name or "unclassified", 40) for name, _ in areas}) or ["no area objects"]
        types = "/".join(rules.object_types)
        raise AnnotationError(f"no {types} object of class {'/'.join(rules.include)} (found: "
                              f"{', '.join(found[:10])}{', …' if len(found) > 10 else ''})", path)
    region = shapely.union_all(include)
    if exclude:
        region = region.difference(shapely.union_all(exclude))
    if slide.offset != (0, 0):
        region = shapely.affinity.translate(region, *slide.offset)
        notes.append(f"MRXS offset {slide.offset} added to annotation coordinates")
    bounds = shapely.box(0, 0, *slide.dimensions)
    inside = region.intersection(bounds)
    if region.area > 0 and inside.area < region.area * (1 - 1e-6):
        if inside.area <= 0:
            raise AnnotationError(f"tumour region lies outside the slide ({slide.dimensions[0]} x "
                                  f"{slide.dimensions[1]} px)", path)
        notes.append(f"{100 * (1 - inside.area / region.area):.1f}% of the tumour region lies outside the "
                     "slide and was cut off")
    polys = [g for g in getattr(inside, "geoms", [inside]) if g.geom_type == "Polygon" and g.area > 0]
    if not polys:
        raise AnnotationError("tumour region selects no area (empty after exclusions)", path)
    return Regions(geometry=shapely.MultiPolygon(polys), source="annotations", notes=notes, origin=path)


def detect_tissue(slide: Slide, thumbnail_size: int = 1024, cell_um: float = 64.0) -> Regions:
    """Tissue (not background) on a thumbnail: saturated and not white, as grid cells merged into polygons."""
    thumb = np.asarray(slide.thumbnail(thumbnail_size).convert("HSV"), dtype=np.float32)
    scale = slide.dimensions[0] / thumb.shape[1]
    sat, val = thumb[..., 1] / 255.0, thumb[..., 2] / 255.0
    mask = (sat > 0.08) & (val > 0.15)
    cell = max(1, int(round(cell_um / (slide.mpp * scale))))
    h, w = mask.shape[0] // cell * cell, mask.shape[1] // cell * cell
    grid = mask[:h, :w].reshape(h // cell, cell, w // cell, cell).mean(axis=(1, 3)) > 0.5
    boxes = []
    for row in range(grid.shape[0]):
        cols = np.flatnonzero(np.diff(np.concatenate(([0], grid[row].astype(np.int8), [0]))))
        for start, stop in zip(cols[::2], cols[1::2]):
            boxes.append(shapely.box(start * cell * scale, row * cell * scale, stop * cell * scale,
                                     (row + 1) * cell * scale))
    if not boxes:
        raise InsufficientTissueError("tissue detection found no tissue", slide.path, possible=0)
    region = shapely.union_all(boxes)
    polys = [g for g in getattr(region, "geoms", [region]) if g.area > 0]
    notes = ["no annotations: tissue detection was used; the model was calibrated on tumour regions and these "
             "regions are not tumour-specific"]
    return Regions(geometry=shapely.MultiPolygon(polys), source="tissue-detection",
                   notes=notes + ([slide.thumbnail_note] if slide.thumbnail_note else []))
