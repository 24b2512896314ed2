"""What every case kind's HTML page shares: the Jinja2 templates (strict: a missing field is an error, not a blank),
images inlined as data URIs (a page is one file, with no external assets) and the colour-blind-safe diverging map."""

from __future__ import annotations

import base64
import io
from functools import cache

import jinja2
from PIL import Image

# ColorBrewer PuOr (colour-blind safe, diverging), near white = zero. Slide pages: orange = pancreas votes
# (decision < 0), purple = small intestine votes (decision > 0). MRI pages: purple = the occluded cell carried the
# patient's class (its probability drops without it), orange = the cell spoke against it.
PUOR = ((127, 59, 8), (179, 88, 6), (224, 130, 20), (253, 184, 99), (254, 224, 182), (247, 247, 247),
        (216, 218, 235), (178, 171, 210), (128, 115, 172), (84, 39, 136), (45, 0, 75))


def diverging_colour(value: float, limit: float) -> tuple[int, int, int]:
    """`value` in [-limit, limit] on the PuOr map (clipped), linearly between its 11 anchors."""
    t = 0.5 if limit <= 0 else min(1.0, max(0.0, 0.5 + value / (2 * limit)))
    position = t * (len(PUOR) - 1)
    low = min(int(position), len(PUOR) - 2)
    frac = position - low
    return tuple(round(a + (b - a) * frac) for a, b in zip(PUOR[low], PUOR[low + 1]))


def colour_stops() -> list[tuple[float, str]]:
    """The map as SVG gradient stops (offset 0..1, hex colour) for the colour bar."""
    return [(i / (len(PUOR) - 1), "#{:02x}{:02x}{:02x}".format(*c)) for i, c in enumerate(PUOR)]


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("netorigin.runtime.reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, digits=4: "–" if v is None else f"{v:.{digits}g}"
    return env


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
