"""One self-contained HTML page per case, and an index page per batch: what was decided, how sure, from where
on the slide, by which model. No server, no external assets (images are inline data URIs), no JavaScript
framework; a case page prints on one A4 page.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import jinja2
import shapely
from PIL import Image, ImageDraw, ImageFont

from ..slide.slide import Slide
from ..slide.verdict import verdict_text
from .html import colour_stops, diverging_colour, environment

THUMBNAIL_PX = 760


@dataclass(frozen=True)
class SlideFigure:
    """One slide's picture for the page: the inline image and what a scale bar needs."""

    name: str
    data_uri: str
    width: int
    height: int
    um_per_px: float
    scale_bar_mm: float
    scale_bar_px: float


def _scale_bar(um_per_px: float, width: int) -> tuple[float, float]:
    """A round length (mm) about a fifth of the image wide, and its length in image pixels."""
    target_mm = width * um_per_px / 1000 / 5
    nice = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50]
    mm = max([n for n in nice if n <= target_mm] or [nice[0]])
    return mm, mm * 1000 / um_per_px


def _draw_scale_bar(draw: ImageDraw.ImageDraw, size: tuple[int, int], mm: float, px: float) -> None:
    """Bottom left, on a white plate, so it stays true however the page scales the image; the label is sized to
    the image (about 1/28 of its width) so it stays legible when printed."""
    font_px = max(14, size[0] // 28)
    x, y = font_px // 2, size[1] - font_px
    label = f"{mm:g} mm"
    font = ImageFont.load_default(size=font_px)
    width = draw.textlength(label, font=font)
    draw.rectangle((x - 6, y - font_px, x + px + 10 + width + 6, y + font_px // 2), fill=(255, 255, 255, 220))
    draw.rectangle((x, y - 3, x + px, y + 3), fill=(0, 0, 0, 255))
    draw.text((x + px + 8, y - font_px * 0.6), label, fill=(0, 0, 0, 255), font=font)


def thumbnail_size(n_slides: int) -> int:
    """Pixels per thumbnail: smaller as slides share the page, so a page stays about 1 MB or less."""
    return THUMBNAIL_PX if n_slides <= 2 else 560 if n_slides <= 4 else 400


def slide_figure(slide: Slide, slide_index: int, patches: list[dict], region: shapely.Geometry | None,
                 limit: float, max_size: int = THUMBNAIL_PX) -> SlideFigure:
    """The thumbnail with the tumour region outlined and each patch filled by its decision value."""
    image = slide.thumbnail(max_size)
    scale = image.width / slide.dimensions[0]
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    if region is not None:
        for polygon in getattr(region, "geoms", [region]):
            for ring in [polygon.exterior, *polygon.interiors]:
                points = [(x * scale, y * scale) for x, y in ring.coords]
                draw.line(points, fill=(0, 150, 70, 255), width=3)
    for p in patches:
        if p["slide"] != slide_index:
            continue
        x, y = p["x"] * scale, p["y"] * scale  # thumbnail, region and patches share the slide's pixel frame
        s = max(2.0, p["size_level0"] * scale)
        colour = diverging_colour(p["decision"], limit)
        draw.rectangle((x, y, x + s, y + s), fill=(*colour, 170), outline=(40, 40, 40, 255), width=1)
    um_per_px = slide.mpp / scale
    mm, px = _scale_bar(um_per_px, image.width)
    _draw_scale_bar(draw, image.size, mm, px)
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, optimize=True)
    return SlideFigure(name=slide.name, data_uri="data:image/jpeg;base64," +
                       base64.b64encode(buffer.getvalue()).decode(), width=image.width, height=image.height,
                       um_per_px=um_per_px, scale_bar_mm=mm, scale_bar_px=px)


@dataclass(frozen=True)
class BandAxis:
    """Positions (0..1) on the S axis of the band, this patient's S and the calibration patients' sums."""

    low: float
    high: float
    s: float
    band: tuple[float, float] | None
    cohort: list[tuple[str, float]]
    ticks: list[tuple[float, str]]

    def x(self, value: float) -> float:
        """SVG x of `value` on the 700-wide axis (20 px margins)."""
        return 20 + 660 * (value - self.low) / (self.high - self.low)


def band_axis(s: float, band: dict | None, cohort: list[dict]) -> BandAxis:
    """An axis wide enough for everything it shows, with about six round ticks."""
    values = [s] + [c["s"] for c in cohort] + ([band["lower"], band["upper"]] if band else [])
    low, high = min(values), max(values)
    pad = max(1e-9, (high - low) * 0.06, abs(high) * 0.01)
    low, high = low - pad, high + pad
    step = 10 ** math.floor(math.log10((high - low) / 6))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= 7:
            step *= factor
            break
    ticks = [k * step for k in range(math.ceil(low / step), math.floor(high / step) + 1)]
    return BandAxis(low=low, high=high, s=s, band=(band["lower"], band["upper"]) if band else None,
                    cohort=[(c["label"], c["s"]) for c in cohort],
                    ticks=[(t, f"{t:g}") for t in ticks])


def _environment() -> jinja2.Environment:
    env = environment()
    env.filters["verdict_text"] = verdict_text
    return env


def case_html(report: dict[str, Any], figures: list[SlideFigure], cohort: list[dict], limit: float) -> str:
    """The case page from the case's JSON report (the record), its slide figures and the calibration cohort."""
    axis = band_axis(report["patient_sum"], report["band"], cohort) if report.get("status") == "ok" else None
    return _environment().get_template("case.html.j2").render(
        r=report, figures=figures, axis=axis, limit=limit, stops=colour_stops())


def index_html(summary: dict[str, Any], reports: dict[str, dict]) -> str:
    """The batch index: every case in a sortable table, counts per verdict, failures with their one-line errors."""
    rows = []
    for outcome in summary["outcomes"]:
        report = reports.get(outcome["case_id"]) or {}
        rows.append({"case": outcome["case_id"], "status": outcome["status"],
                     "verdict": report.get("verdict") or outcome.get("verdict"),
                     "s": report.get("patient_sum"), "votes": report.get("votes"),
                     "reason": outcome.get("reason"), "has_page": bool(report)})
    verdicts = {v: sum(r["verdict"] == v for r in rows) for v in ("small_intestine", "pancreas", "uncertain")}
    return _environment().get_template("index.html.j2").render(rows=rows, summary=summary, verdicts=verdicts)
