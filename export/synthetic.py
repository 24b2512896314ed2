"""Synthetic H&E-like cohorts: pyramidal slides OpenSlide reads as real scans, plus QuPath GeoJSON.

The demo and the test suites build everything from here; nothing is downloaded. Classes differ
learnably (nucleus density, size and stain hue): "pancreas", "small_intestine" and a heterogeneous
"other" group whose patients each draw their own mixture. All randomness is seeded.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageDraw, ImageFilter

from netorigin.calibration.labels import LABEL_NAMES

BASE_MPP = 1.0  # the texture is drawn at 1 um/px, then scaled to the slide's level 0
TILE = 256


@dataclass(frozen=True)
class Texture:
    """Stain and nuclei of one patient's tumour."""

    nuclei_per_mm2: float
    radius_um: float
    nucleus_rgb: tuple[int, int, int]
    stroma_rgb: tuple[int, int, int]


def patient_texture(label: str, rng: np.random.Generator) -> Texture:
    """Class-specific means with patient-level jitter."""
    jitter = rng.normal(0, 1, 4)
    if label == "pancreas":
        density, radius, nucleus, stroma = 14000, 3.0, (70, 40, 125), (215, 130, 185)
    elif label == "small_intestine":
        density, radius, nucleus, stroma = 3500, 3.6, (95, 45, 110), (240, 165, 175)
    else:
        density = rng.uniform(6000, 9000)
        radius = rng.uniform(2.8, 3.6)
        nucleus = tuple(int(v) for v in rng.integers([50, 30, 80], [120, 70, 150]))
        stroma = tuple(int(v) for v in rng.integers([200, 120, 150], [245, 175, 200]))
    shift = int(4 * jitter[2])
    return Texture(nuclei_per_mm2=float(density * (1 + 0.08 * jitter[0])),
                   radius_um=float(radius * (1 + 0.05 * jitter[1])),
                   nucleus_rgb=tuple(int(np.clip(c + shift, 0, 255)) for c in nucleus),
                   stroma_rgb=tuple(int(np.clip(c + 4 * jitter[3], 0, 255)) for c in stroma))


def tissue_image(width_um: int, height_um: int, texture: Texture, rng: np.random.Generator
                 ) -> tuple[Image.Image, list[list[tuple[float, float]]]]:
    """An RGB image at 1 um/px: white glass, an irregular tissue piece, stained texture.

    Returns the image and the tumour outline polygon (in um) drawn inside the tissue.
    """
    w, h = width_um, height_um
    canvas = np.full((h, w, 3), 243, dtype=np.uint8)
    cx, cy = w / 2, h / 2
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    shape_r = 1 + 0.12 * np.sin(3 * angles + rng.uniform(0, 6)) + rng.normal(0, 0.03, angles.size)
    outline = [(cx + 0.47 * w * r * np.cos(a), cy + 0.47 * h * r * np.sin(a)) for a, r in zip(angles, shape_r)]
    mask_img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask_img).polygon(outline, fill=255)
    mask = np.asarray(mask_img) > 0
    noise = rng.normal(0, 6, (h // 8 + 1, w // 8 + 1, 3))
    noise = np.asarray(Image.fromarray(np.clip(noise + 128, 0, 255).astype(np.uint8)).resize((w, h),
                       Image.BILINEAR), dtype=np.float32) - 128
    stroma = np.clip(np.array(texture.stroma_rgb, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    canvas[mask] = stroma[mask]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    n = int(texture.nuclei_per_mm2 * mask.sum() / 1e6)
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    keep = mask[ys.astype(int).clip(0, h - 1), xs.astype(int).clip(0, w - 1)]
    radii = np.abs(rng.normal(texture.radius_um, texture.radius_um * 0.2, n))
    shades = rng.normal(0, 12, n)
    colours = np.clip(np.array(texture.nucleus_rgb)[None, :] + shades[keep][:, None], 0, 255).astype(int)
    for x, y, r, colour in zip(xs[keep], ys[keep], radii[keep], colours.tolist()):
        draw.ellipse((x - r, y - r * 0.8, x + r, y + r * 0.8), fill=tuple(colour))
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    tumour = [(cx + 0.25 * w * r * np.cos(a), cy + 0.25 * h * r * np.sin(a)) for a, r in zip(angles, shape_r)]
    return image, [tumour]


def write_pyramid(path: Path, level0: Image.Image, mpp: float | None, downsamples: tuple[float, ...] = (1, 4, 16),
                  svs: bool = True, quality: int = 85) -> None:
    """A tiled JPEG pyramid: Aperio SVS style (MPP in the description) or generic TIFF (MPP in resolution tags;
    none when `mpp` is None). Downsamples may be non-integer (as in NDPI or MRXS files)."""
    base = np.asarray(level0)
    h, w = base.shape[:2]
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        for i, ds in enumerate(downsamples):
            data = base if ds == 1 else np.asarray(level0.resize((max(1, round(w / ds)), max(1, round(h / ds))),
                                                                   Image.BILINEAR))
            kwargs = dict(tile=(TILE, TILE), compression="jpeg", compressionargs={"level": quality},
                          photometric="rgb", metadata=None, subfiletype=0 if i == 0 else 1,
                          maxworkers=os.cpu_count())  # tiles compress independently: same bytes, every core
            if svs:
                if i == 0:
                    kwargs["description"] = (f"Aperio Image Library v12.0.0\r\n{w}x{h} [0,0 {w}x{h}] "
                                             f"({TILE}x{TILE}) JPEG Q={quality}|AppMag = {round(10 / mpp)}"
                                             f"|MPP = {mpp}")
            elif mpp is not None:
                res = 1e4 / (mpp * ds)
                kwargs.update(resolution=(res, res), resolutionunit="CENTIMETER")
            tif.write(data, **kwargs)


def geojson_feature(coords_px: list[tuple[float, float]], name: str | None, holes=()) -> dict:
    ring = [list(map(float, p)) for p in coords_px] + [list(map(float, coords_px[0]))]
    rings = [ring] + [[list(map(float, p)) for p in hole] + [list(map(float, hole[0]))] for hole in holes]
    props = {"objectType": "annotation"}
    if name is not None:
        props["classification"] = {"name": name, "color": [200, 0, 0]}
    return {"type": "Feature", "id": "00000000-0000-0000-0000-000000000000",
            "geometry": {"type": "Polygon", "coordinates": rings}, "properties": props}


@dataclass(frozen=True)
class SyntheticSlide:
    slide: Path
    annotations: Path


def make_slide(path: Path, label: str, texture: Texture, rng: np.random.Generator, mpp: float = 0.5,
               size_um: tuple[int, int] = (2400, 2000), svs: bool = True, with_hole: bool = True
               ) -> SyntheticSlide:
    """Write one slide and its QuPath annotations (tumour polygon, a necrosis hole, an exclusion)."""
    image, (tumour,) = tissue_image(size_um[0], size_um[1], texture, rng)
    scale = BASE_MPP / mpp
    level0 = image.resize((int(size_um[0] * scale), int(size_um[1] * scale)), Image.BILINEAR) \
        if scale != 1 else image
    write_pyramid(path, level0, mpp, svs=svs)
    to_px = [(x * scale, y * scale) for x, y in tumour]
    cx, cy = np.mean([p[0] for p in to_px]), np.mean([p[1] for p in to_px])
    hole = [(cx + 60 * scale * np.cos(a), cy + 60 * scale * np.sin(a)) for a in np.linspace(0, 6.28, 12,
                                                                                              endpoint=False)]
    feats = [geojson_feature(to_px, "Tumor", holes=[hole] if with_hole else ())]
    ex = [(to_px[0][0] - 40 * scale, to_px[0][1] - 40 * scale), (to_px[0][0], to_px[0][1] - 40 * scale),
          (to_px[0][0], to_px[0][1]), (to_px[0][0] - 40 * scale, to_px[0][1])]
    feats.append(geojson_feature(ex, "Exclude"))
    ann = path.with_suffix(".geojson")
    ann.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return SyntheticSlide(slide=path, annotations=ann)


MANIFEST_COLUMNS = ("case", "label", "specimen", "slide", "annotations")


def make_cohort(out: str | Path, counts: dict[str, int], seed: int = 0, mpps: tuple[float, ...] = (0.5, 0.25),
                size_um: tuple[int, int] = (2400, 2000), multi_slide_every: int = 4) -> Path:
    """Write a cohort and its manifest CSV (case, label, specimen, slide, annotations); returns the CSV path.

    Cases alternate scanner resolutions; every `multi_slide_every`-th case has two specimens.
    """
    out = Path(out)
    (out / "slides").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    index = 0
    for label in LABEL_NAMES:
        for _ in range(counts.get(label, 0)):
            case = f"{label[:3]}{index:03d}"
            texture = patient_texture(label, rng)
            specimens = ("A", "B") if multi_slide_every and index % multi_slide_every == multi_slide_every - 1 \
                else ("A",)
            for specimen in specimens:
                mpp = mpps[index % len(mpps)]
                slide = make_slide(out / "slides" / f"{case}-{specimen}.svs", label, texture, rng, mpp=mpp,
                                   size_um=size_um)
                rows.append({"case": case, "label": label, "specimen": specimen,
                             "slide": str(slide.slide.relative_to(out)),
                             "annotations": str(slide.annotations.relative_to(out))})
            index += 1
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
