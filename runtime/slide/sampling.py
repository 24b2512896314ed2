"""Seeded tumour-patch sampling at the right pyramid level (method.md, "Patch sampling").

Candidates are drawn from a per-slide generator seeded with (seed, slide index) and read in parallel
threads; acceptance is decided in candidate order, so the patches never depend on thread timing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, wait
from dataclasses import dataclass, replace

import numpy as np
import shapely
from PIL import Image

from ..errors import AnnotationError, InsufficientTissueError, SlideError
from .regions import Regions
from .slide import Level, Slide

ATTEMPTS_PER_PATCH = 10
MIN_ATTEMPTS = 200
# A read may see the model's field of view give or take this much (README: patch geometry).
FOV_TOLERANCE = 0.005
# Reading a one-level slide at more than this many times the needed resolution is stated in the report (its cost).
MAX_FLAT_OVERSAMPLING = 2.0
# Rejection sampling gives up (a sliver polygon) after this many rounds of 16 points in the bounding box.
MAX_REJECTION_ROUNDS = 4096


@dataclass(frozen=True)
class PatchGeometry:
    """Field of view and the white filter, as the model's metadata states them."""

    field_of_view_um: float = 497.0
    pixels: int = 224
    anchor: str = "centre"
    luma_above: int = 240
    max_fraction: float = 0.8

    @classmethod
    def from_metadata(cls, patch: dict) -> PatchGeometry:
        white = patch["white_filter"]
        return cls(field_of_view_um=float(patch["field_of_view_um"]), pixels=int(patch["pixels"]),
                   anchor=patch["anchor"], luma_above=int(white["luma_above"]),
                   max_fraction=float(white["max_fraction"]))

    @property
    def target_mpp(self) -> float:
        return self.field_of_view_um / self.pixels


@dataclass(frozen=True)
class ReadPlan:
    """How one slide is read: level, read size in that level's pixels, and the true field of view."""

    level: Level
    read_size: int
    size_level0: float
    field_of_view_um: float
    note: str | None = None  # what this plan costs beyond a pyramid read, for the report

    def top_left(self, x: float, y: float, centred: bool) -> tuple[int, int]:
        """Level-0 top-left of the read around the point (x, y), snapped to the nearest pixel of the read level.

        Off that grid OpenSlide resamples a level > 0 read by blending neighbouring pixels: about 3x slower at
        40x (measured) and not the pixels the scanner stored. The snap moves the patch by at most half a level
        pixel (1 um at 20x and 40x when reading level 1 of a 1 / 4 / 16 pyramid). It lands exactly on the grid
        only where the level's downsample is a whole number; OpenSlide derives downsamples from level sizes, and
        a scan whose level-0 size is not a multiple of it (4.00015, say) still reads slightly off the grid."""
        half = self.size_level0 / 2 if centred else 0.0
        step = self.level.downsample
        return (int(round(round((x - half) / step) * step)), int(round(round((y - half) / step) * step)))


def plan_reads(slide: Slide, geometry: PatchGeometry, level_index: int | None = None) -> ReadPlan:
    """Read at the level closest to, not coarser than, what `pixels` over the field of view needs.

    Checked before any pixel is read: the slide can supply the model's pixels and holds one field of view,
    and the planned read sees the model's field of view within FOV_TOLERANCE.
    """
    fov, needed = geometry.field_of_view_um, geometry.target_mpp
    if slide.mpp > needed * (1 + FOV_TOLERANCE):
        option = {"slide": "--force-mpp if the recorded value is wrong", "fallback": "check --mpp",
                  "forced": "check --force-mpp"}[slide.mpp_source]
        raise SlideError(f"slide is {slide.mpp:g} um per pixel ({slide.mpp_source}) at its finest level; the model "
                         f"needs {needed:.4g} um per pixel or finer ({fov:g} um over {geometry.pixels} px): "
                         f"scan at a higher magnification, or {option}", slide.path)
    width_um, height_um = (n * slide.mpp for n in slide.dimensions)
    if min(width_um, height_um) < fov:
        raise SlideError(f"slide is {width_um:.0f} x {height_um:.0f} um ({slide.dimensions[0]} x "
                         f"{slide.dimensions[1]} px at {slide.mpp:g} um/px), smaller than one {fov:g} um field "
                         "of view", slide.path)
    if level_index is not None and not 0 <= level_index < len(slide.levels):
        raise SlideError(f"level {level_index} does not exist (the slide has levels 0-{len(slide.levels) - 1})",
                         slide.path)
    level = slide.levels[level_index] if level_index is not None else slide.level_for(needed)
    level_mpp = slide.mpp * level.downsample
    read_size = max(1, int(round(fov / level_mpp)))
    plan = ReadPlan(level=level, read_size=read_size, size_level0=read_size * level.downsample,
                    field_of_view_um=read_size * level_mpp)
    if abs(plan.field_of_view_um - fov) > FOV_TOLERANCE * fov:
        raise SlideError(f"level {level.index} ({level_mpp:.4g} um/px) reads {read_size} px = "
                         f"{plan.field_of_view_um:.1f} um, not the model's {fov:g} um (tolerance "
                         f"{100 * FOV_TOLERANCE:g} %)", slide.path)
    if level_index is None and len(slide.levels) == 1 and read_size > MAX_FLAT_OVERSAMPLING * geometry.pixels:
        factor = read_size / geometry.pixels
        plan = replace(plan, note=(
            f"{slide.name} has a single level (no pyramid): each patch was read at full resolution, {read_size} "
            f"px for the model's {geometry.pixels} px ({factor * factor:.0f}x the pixels a pyramid level would "
            "read; see read_and_sample and resize in timings_s); the verdict is the same method, only slower"))
    return plan


def allot(total: int, parts: int) -> list[int]:
    """Split evenly; the remainder goes +1 to the first parts."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def allot_case(total: int, specimens: list[str]) -> list[int]:
    """Patches per slide: evenly over specimens (in order of first appearance), then over their slides."""
    order = list(dict.fromkeys(specimens))
    per_specimen = dict(zip(order, allot(total, len(order))))
    counts = [0] * len(specimens)
    for name in order:
        members = [i for i, s in enumerate(specimens) if s == name]
        for i, n in zip(members, allot(per_specimen[name], len(members))):
            counts[i] = n
    return counts


@dataclass(frozen=True)
class Patch:
    """One accepted patch: where it was read and its model input."""

    slide_index: int
    x: int  # level-0 top-left, in the slide's pixel frame (MRXS offset included)
    y: int
    size_level0: float
    level: int
    pixels: np.ndarray  # uint8 [P, P, 3]


def empty_fraction(region: Image.Image, luma_above: int) -> float:
    """Share of an RGBA region's pixels that are white (8-bit luma above the threshold) or outside the scan
    (transparent)."""
    luma = np.asarray(region.convert("L"))
    return float(np.mean((luma > luma_above) | (np.asarray(region.getchannel("A")) == 0)))


class RegionPointSampler:
    """Uniform points in a region: polygon chosen with probability proportional to area, then rejection."""

    def __init__(self, regions: Regions, rng: np.random.Generator) -> None:
        self.origin = regions.origin
        self.polygons = regions.polygons
        areas = np.array([p.area for p in self.polygons])
        self.weights = areas / areas.sum()
        self.rng = rng

    def draw(self) -> tuple[float, float]:
        poly = self.polygons[self.rng.choice(len(self.polygons), p=self.weights)]
        minx, miny, maxx, maxy = poly.bounds
        for _ in range(MAX_REJECTION_ROUNDS):
            xs = self.rng.uniform(minx, maxx, 16)
            ys = self.rng.uniform(miny, maxy, 16)
            hits = np.flatnonzero(shapely.contains_xy(poly, xs, ys))
            if hits.size:
                return float(xs[hits[0]]), float(ys[hits[0]])
        raise AnnotationError(f"a tumour polygon of {poly.area:.0f} px2 is too thin to sample in "
                              f"(under 1 in {16 * MAX_REJECTION_ROUNDS} points of its bounding box fall inside)",
                              self.origin)


def sample_slide(slide: Slide, regions: Regions, count: int, geometry: PatchGeometry, seed: int,
                 slide_index: int, executor: Executor, plan: ReadPlan | None = None,
                 resize_times: list[float] | None = None) -> Iterator[Patch]:
    """Yield `count` accepted patches of one slide, or raise InsufficientTissueError.

    `resize_times` (optional) collects each resize's duration, summed over threads, for the benchmarks.
    """
    if count == 0:
        return
    plan = plan or plan_reads(slide, geometry)
    points = RegionPointSampler(regions, np.random.default_rng([seed, slide_index]))

    def read(point: tuple[float, float]) -> tuple[int, int, np.ndarray | None]:
        x0, y0 = plan.top_left(point[0], point[1], geometry.anchor == "centre")
        region = slide.read_region(x0, y0, plan.level, plan.read_size)
        if empty_fraction(region, geometry.luma_above) > geometry.max_fraction:
            return x0, y0, None
        image = region.convert("RGB")
        if plan.read_size != geometry.pixels:
            t = time.perf_counter()
            image = image.resize((geometry.pixels, geometry.pixels), Image.BILINEAR)
            if resize_times is not None:
                resize_times.append(time.perf_counter() - t)
        return x0, y0, np.asarray(image)

    budget = max(MIN_ATTEMPTS, ATTEMPTS_PER_PATCH * count)
    accepted = attempts = 0
    while accepted < count:
        if attempts >= budget:
            raise InsufficientTissueError(
                f"insufficient tissue: {accepted} of {count} patches passed the white filter after "
                f"{attempts} draws", slide.path, possible=accepted, required=count)
        chunk = min(budget - attempts, int((count - accepted) * 1.25) + 4)
        candidates = [points.draw() for _ in range(chunk)]
        attempts += chunk
        futures = [executor.submit(read, point) for point in candidates]
        try:
            for future in futures:
                x0, y0, pixels = future.result()
                if pixels is None:
                    continue
                yield Patch(slide_index=slide_index, x=x0, y=y0, size_level0=plan.size_level0,
                            level=plan.level.index, pixels=pixels)
                accepted += 1
                if accepted == count:
                    break
        finally:
            # Reads still in flight must finish before the caller may close the slide.
            for future in futures:
                future.cancel()
            wait(futures)


_DONE = object()


def sample_case(slides: list[Slide], regions: list[Regions], counts: list[int], geometry: PatchGeometry, seed: int,
                executor: Executor, plans: list[ReadPlan], resize_times: list[float] | None = None
                ) -> Iterator[Patch]:
    """Every slide's patches, in slide order, the slides sampled concurrently: one producer thread per slide
    shares the reader threads, so a case's second slide is read while its first is still being consumed. Each
    slide's patches are exactly what `sample_slide` gives it alone (its own seeded generator, draw order)."""
    stop = threading.Event()
    queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in slides]

    def produce(index: int) -> None:
        try:
            for patch in sample_slide(slides[index], regions[index], counts[index], geometry, seed, index, executor,
                                      plans[index], resize_times):
                if stop.is_set():
                    break  # closes the generator: its reads in flight finish before the slide may close
                queues[index].put(patch)
            queues[index].put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised in slide order
            queues[index].put(exc)

    producers = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(len(slides))]
    for thread in producers:
        thread.start()
    try:
        for q in queues:
            while (item := q.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
    finally:
        stop.set()
        for thread in producers:
            thread.join()
