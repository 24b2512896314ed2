"""The MRI case page: the lesion class, the patient's summed probabilities, and every image group as the model saw
it (the T2 channel, the region of interest outlined) beside its occlusion map and its probabilities. One
self-contained HTML file, as the slide case page."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..reports.html import colour_stops, diverging_colour, environment, png_data_uri
from .groups import ImageGroups

REGION_COLOUR = (0, 200, 90)


def _grey(channel: np.ndarray) -> np.ndarray:
    """A display window per image: 0 to the 99th percentile of its signal (the model's scale is per volume)."""
    signal = channel[channel > 0]
    top = float(np.percentile(signal, 99)) if signal.size else 1.0
    return (np.clip(channel / max(top, 1e-6), 0, 1) * 255).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The region's boundary pixels: inside, with a 4-neighbour outside."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def group_images(pixels: np.ndarray, roi: np.ndarray, occlusion: np.ndarray | None, limit: float
                 ) -> tuple[str, str | None]:
    """The group's T2 channel with the region outlined, and (if measured) its occlusion map over it."""
    grey = np.stack([_grey(pixels[0])] * 3, axis=-1)
    outline = _outline(roi)
    outlined = grey.copy()
    outlined[outline] = REGION_COLOUR
    t2 = png_data_uri(Image.fromarray(outlined))
    if occlusion is None:
        return t2, None
    cells = np.array([[diverging_colour(float(v), limit) for v in row] for row in occlusion], dtype=np.uint8)
    heat = np.asarray(Image.fromarray(cells).resize(grey.shape[1::-1], Image.Resampling.NEAREST))
    blended = (0.45 * grey + 0.55 * heat).astype(np.uint8)
    blended[outline] = REGION_COLOUR
    return t2, png_data_uri(Image.fromarray(blended))


def mri_case_html(report: dict[str, Any], groups: ImageGroups) -> str:
    """The case page from the case's JSON report (the record) and the image groups it was made from."""
    maps = [np.asarray(g["occlusion"]) if "occlusion" in g else None for g in report["groups"]]
    limit = max([float(np.abs(m).max()) for m in maps if m is not None] or [0.0]) or 1e-6
    figures = [group_images(groups.pixels[k], groups.roi[k], maps[k], limit) for k in range(len(groups.pixels))]
    return environment().get_template("mri_case.html.j2").render(r=report, figures=figures, limit=limit,
                                                                 stops=colour_stops())
