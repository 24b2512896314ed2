"""Reports of a case: JSON (the record), QuPath GeoJSON of the patches, a PNG thumbnail, readable text."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ImageDraw

from ..atomic import write_bytes_atomic, write_text_atomic
from ..dicom.dicomweb import parse_series_url
from ..errors import InsufficientTissueError, MissingDependencyError, OutputError, first_line
from ..model.contract import DEMO_WARNING
from ..names import case_file
from ..slide.predictor import CaseResult, Predictor, SlideInput, case_inputs
from ..slide.slide import MppRule, Slide
from ..slide.verdict import verdict_text
from .case_page import case_html, slide_figure, thumbnail_size
from .versions import versions

REPORT_VERSION = 3  # 3: inputs record where each slide's MPP came from (verify replays it)


@cache
def slide_versions() -> dict[str, str]:
    """The versions a slide report records: the engine's, and OpenSlide's (it read the pixels)."""
    import openslide

    return versions() | {"openslide": openslide.__library_version__, "openslide_python": openslide.__version__}


def case_report(result: CaseResult) -> dict[str, Any]:
    """The JSON record of one case; identical for identical inputs apart from `timings` and `created`."""
    v = result.verdict
    report = {
        "report_version": REPORT_VERSION,
        "status": "ok",
        "case": result.case_id,
        "warning": result.warning,
        "verdict": v.verdict,
        "majority_vote": v.majority,
        "patient_sum": v.patient_sum,
        "score": result.model.get("score", "patch-sum"),
        "votes": _votes(result),
        "band": None if result.band is None else asdict(result.band),
        "confidence": None if result.band is None else result.band.c,
        "in_band": v.in_band,
        "seed": result.seed,
        "region_rules": result.region_rules,
        "inputs": result.inputs,
        "level": result.level,
        "provider": result.provider,
        "engine": result.engine,
        "model": result.model,
        "slides": [asdict(s) for s in result.slides],
        "notes": result.notes,
        "patches": result.patches,
        "versions": dict(slide_versions()),
        "timings_s": {k: round(t, 4) for k, t in result.timings.items()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return report


def _votes(result: CaseResult) -> dict[str, int]:
    """Patches per side. A bag head's patches do not vote (the sign of S decides): they are counted by the sign
    of their contribution, and KMIL's patches that key recognition left out of the pooling are counted apart,
    never as pancreas."""
    v = result.verdict
    class0, class1 = result.model["classes"]["0"], result.model["classes"]["1"]
    votes = {class1: v.votes_small_intestine, class0: v.n_patches - v.votes_small_intestine, "n_patches": v.n_patches}
    if result.model.get("score") == "bag":
        votes["not_pooled"] = sum(patch_class(p) == NOT_POOLED for p in result.patches)
        votes[class0] -= votes["not_pooled"]
    return votes


NOT_POOLED = "Not pooled"


def patch_class(p: dict) -> str:
    """QuPath class of a sampled patch: the side its decision points to; a bag head's unpooled patch (attention
    exactly 0, so its contribution is 0 too) apart."""
    if p.get("attention") == 0.0:
        return NOT_POOLED
    return "Small intestine" if p["decision"] > 0 else "Pancreas"


@dataclass(frozen=True)
class CaseExtras:
    """What a case writes beyond its JSON report and page: QuPath detections, PNG thumbnails, (for slides from a
    DICOMweb archive) the DICOM results stored back there; and how its cluster was reached, for the report."""

    geojson: bool = False
    thumbnail: bool = False
    store: bool = False
    cluster: str = "local"  # where the case ran (ClusterAccess.scheme: local, tls, tcp-loopback, tcp-insecure)


def insufficient_report(case_id: str, exc: InsufficientTissueError, predictor: Predictor,
                        items: Sequence[SlideInput], level: int | None = None) -> dict[str, Any]:
    """The JSON record of a case without a verdict: never one on fewer patches than the model was calibrated for."""
    return {"report_version": REPORT_VERSION, "status": "insufficient_tissue", "case": case_id, "verdict": None,
            "problem": str(exc), "patches_possible": exc.possible,
            "patches_required": predictor.contract.patches_per_case,
            "seed": predictor.seed, "confidence": predictor.band.c if predictor.band else None,
            "region_rules": predictor.rules.as_dict(), "inputs": case_inputs(items), "level": level,
            "provider": predictor.provider, "engine": dict(predictor.engine_choice),
            "notes": predictor.model_notes(),
            "warning": DEMO_WARNING if predictor.contract.is_demo else None,
            "model": predictor.model_info(), "versions": dict(slide_versions()),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def write_insufficient_report(out: Path, case_id: str, exc: InsufficientTissueError, predictor: Predictor,
                              items: Sequence[SlideInput], level: int | None = None,
                              extras: CaseExtras = CaseExtras()) -> Path:
    """A report (JSON and page) that says why there is no verdict (and its DICOM SR for DICOM slides)."""
    report = insufficient_report(case_id, exc, predictor, items, level)
    report["dicom_results"] = dicom_outputs(report, _dicom_sources(items), items[0].path, out, extras.store)
    report["cluster"] = extras.cluster
    write_text_atomic(case_file(out, case_id, ".html"), case_html(report, [], [], 0.0))
    path = case_file(out, case_id, ".json")
    write_text_atomic(path, json.dumps(report, indent=2))
    return path


def dicom_outputs(report: dict[str, Any], sources: list[tuple[Any, Any]] | None, first: Path | str, out: Path,
                  store: bool = False) -> dict[str, Any] | None:
    """For a case whose slides are all DICOM (`sources`: each slide's base-instance header and region sampled;
    None otherwise): CASE.sr.dcm and CASE.slideN.ann.dcm beside the JSON, and with `store` both stored back to the
    DICOMweb service of the `first` slide. Where the `dicom` extra is missing, the JSON says why nothing was
    written."""
    if sources is None:
        return None
    from ..dicom.dicom_results import write_dicom_results

    store_to = parse_series_url(str(first))[0] if store else None
    try:
        return write_dicom_results(report, sources, case_file(out, report["case"], ".sr.dcm"),
                                   lambda i: case_file(out, report["case"], f".slide{i}.ann.dcm"), store_to)
    except MissingDependencyError as exc:
        problem = str(exc)
    except (ValueError, KeyError, IndexError) as exc:  # a source header highdicom cannot take
        problem = f"the DICOM results could not be built from the slides' headers ({first_line(exc)})"
    if store:  # asked to store and nothing to store: the case's error, not a quiet success
        raise OutputError(f"--store: {problem}", out)
    return {"not_written": problem}


def _dicom_sources(items: Sequence[SlideInput]) -> list[tuple[Any, None]] | None:
    """Each slide's base-instance header when every slide is DICOM (None otherwise), for a case without patches."""
    sources = []
    for item in items:
        with Slide(item.path, item.mpp) as slide:
            if slide.vendor != "dicom":
                return None
            sources.append((slide.dicom_header(), None))
    return sources


def text_summary(result: CaseResult) -> str:
    v = result.verdict
    lines = []
    if result.warning:
        lines.append(f"*** {result.warning} ***")
    band = "no band (uncalibrated model)" if result.band is None else \
        f"band ({result.band.lower:.3f}, {result.band.upper:.3f}) at c = {result.band.c:g}"
    lines += [
        f"case {result.case_id}: {verdict_text(v.verdict)}",
        f"  S = {v.patient_sum:.4f}, {band}",
        (f"  bag score of {v.n_patches} patches ({result.model['head']}): its sign decides outside the band "
         f"({v.majority}); {v.votes_small_intestine} patches push towards small intestine"
         if result.model.get("score") == "bag" else
         f"  votes: {v.votes_small_intestine} small intestine / {v.n_patches - v.votes_small_intestine} pancreas "
         f"of {v.n_patches} patches (majority: {v.majority})"),
        f"  {len(result.slides)} slide(s), provider {result.provider}, seed {result.seed}, "
        f"{result.timings['total']:.2f} s",
    ]
    lines += [f"  note: {n}" for n in result.notes]
    return "\n".join(lines)


def patches_geojson(result: CaseResult, slide_index: int, offset: tuple[int, int] = (0, 0)) -> dict:
    """The sampled patches of one slide as QuPath detections, decision value (and a bag head's attention) as
    measurements."""
    features = []
    for p in result.patches:
        if p["slide"] != slide_index:
            continue
        x, y, s = p["x"] - offset[0], p["y"] - offset[1], p["size_level0"]
        cls = patch_class(p)
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s],
                                                             [x, y]]]},
            "properties": {"objectType": "detection", "classification": {"name": cls},
                           "measurements": {k: p[k] for k in ("decision", "attention") if k in p}},
        })
    return {"type": "FeatureCollection", "features": features}


def thumbnail_png(result: CaseResult, slide_index: int, slide: Slide, max_size: int = 1024) -> bytes:
    """The slide with its patches outlined: red for small intestine votes, blue for pancreas votes, grey for a
    bag head's patches left out of its pooling."""
    image = slide.thumbnail(max_size)
    scale = image.width / slide.dimensions[0]
    draw = ImageDraw.Draw(image)
    for p in result.patches:
        if p["slide"] != slide_index:
            continue
        x, y, s = p["x"] * scale, p["y"] * scale, p["size_level0"] * scale
        colour = {"Small intestine": (220, 30, 30), "Pancreas": (30, 60, 220)}.get(patch_class(p), (128, 128, 128))
        draw.rectangle((x, y, x + s, y + s), outline=colour, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_case_outputs(result: CaseResult, out: Path, extras: CaseExtras = CaseExtras()) -> list[Path]:
    """Write the extras, the DICOM results (stored back to the slides' DICOMweb service with `store`) and the case
    page, then the JSON report last (its presence marks a finished case); all atomic."""
    written, figures = [], []
    report = case_report(result)
    limit = float(np.max(np.abs(result.decisions))) if len(result.decisions) else 0.0
    dicom = []  # each DICOM slide's header and region, taken while the slide is open here (no second open)
    for index, summary in enumerate(result.slides):
        stem = case_file(out, result.case_id, f".slide{index}")
        with Slide(summary.fingerprint["path"], MppRule(forced=summary.fingerprint["mpp"])) as slide:
            region = result.regions[index] if index < len(result.regions) else None
            figures.append(slide_figure(slide, index, result.patches, region, limit,
                                        thumbnail_size(len(result.slides))))
            if slide.vendor == "dicom":
                dicom.append((slide.dicom_header(), region))
            if extras.geojson:
                target = stem.with_name(stem.name + ".patches.geojson")
                write_text_atomic(target, json.dumps(patches_geojson(result, index, slide.offset)))
                written.append(target)
            if extras.thumbnail:
                target = stem.with_name(stem.name + ".thumbnail.png")
                write_bytes_atomic(target, thumbnail_png(result, index, slide))
                written.append(target)
    all_dicom = len(dicom) == len(result.slides)
    report["dicom_results"] = dicom_outputs(report, dicom if all_dicom else None,
                                            result.slides[0].fingerprint["path"], out, extras.store)
    report["cluster"] = extras.cluster
    page = case_file(out, result.case_id, ".html")
    write_text_atomic(page, case_html(report, figures, result.calibration_sums, limit))
    written.append(page)
    report_path = case_file(out, result.case_id, ".json")
    write_text_atomic(report_path, json.dumps(report, indent=2))
    written.append(report_path)
    return written
