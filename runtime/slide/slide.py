"""A whole-slide image opened through OpenSlide, with the facts the sampler needs.

Every format OpenSlide reads works (SVS, NDPI, MRXS, SCN, generic tiled TIFF, DICOM, ...), and a folder of one
slide's DICOM instances. Errors are turned into `SlideError`s that name the file; a handle that failed a read is
reopened, not reused.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import openslide
from PIL import Image

from ..dicom.dicom_input import DicomSlideFolder, describe_dicom, slide_folder, volume_series_of
from ..dicom.dicomweb import DicomWebHandle, is_series_url
from ..errors import ConfigurationError, ManifestError, SlideError

# Bounded per-handle tile cache so long batch runs stay flat in memory.
TILE_CACHE_BYTES = 32 * 1024 * 1024
# A thumbnail made from a finer level (the coarse one does not decode) reads at most this many pixels.
THUMBNAIL_MAX_PIXELS = 64 * 1024 * 1024
# Microns per pixel that whole-slide scanners record (about 100x to 1.25x objectives). A value outside is a
# file that is not a scan (an image editor's 72 dpi is 352.8 um/px) or a broken header: only forced MPP is used.
SCANNER_MPP_RANGE = (0.05, 16.0)


@dataclass(frozen=True)
class MppRule:
    """Where microns per pixel come from: the slide; `fallback` only where it records none; `forced` always."""

    fallback: float | None = None
    forced: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("mpp", self.fallback), ("force-mpp", self.forced)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigurationError(f"--{name} must be a positive number of microns per pixel (got {value})")


@dataclass(frozen=True)
class Level:
    index: int
    downsample: float
    width: int
    height: int


def as_mpp_rule(value: MppRule | float | None) -> MppRule:
    """The API's shorthand: a number is a fallback MPP, None is "what the slide records"."""
    if isinstance(value, MppRule):
        return value
    if value is None:
        return MppRule()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return MppRule(fallback=float(value))
    raise ConfigurationError(f"mpp must be a number or an MppRule (got {type(value).__name__})")


def _recorded_mpp(props) -> tuple[float, float] | None:
    """The slide's own (x, y) microns per pixel, or None where it records none or no number."""
    try:
        return float(props[openslide.PROPERTY_NAME_MPP_X]), float(props[openslide.PROPERTY_NAME_MPP_Y])
    except (KeyError, ValueError):
        return None


class Slide:
    """One slide: microns per pixel, pyramid levels, MRXS offset and thread-safe region reads."""

    def __init__(self, path: str | Path, mpp: MppRule = MppRule()) -> None:
        self.url = str(path) if is_series_url(path) else None  # a slide in a DICOMweb archive
        self.path: Path | str = self.url or Path(path)
        self.dicom_folder: DicomSlideFolder | None = None
        self._series: DicomSlideFolder | None = None  # a DICOM instance file's series, found in its folder
        # what is opened: the URL (DicomWebHandle checks its series), else the file or a folder's VOLUME instance
        self._file = self.url or self._local_file()
        self._lock = threading.Lock()
        self.thumbnail_note: str | None = None
        self._handle = self._open()
        try:
            props = self._handle.properties
            self.vendor = props.get(openslide.PROPERTY_NAME_VENDOR, "unknown")
            recorded = _recorded_mpp(props)
            self.mpp, self.mpp_source = self._microns_per_pixel(recorded, mpp)
            self.mpp_recorded = (sum(recorded) / 2 if recorded and all(map(math.isfinite, recorded))
                                 else None)  # reported, above all when MPP is forced over it
        except BaseException:
            self._handle.close()  # a refused slide must not leak its handle (batch runs open thousands)
            raise
        self.levels = tuple(Level(i, float(ds), *dims) for i, (ds, dims) in
                            enumerate(zip(self._handle.level_downsamples, self._handle.level_dimensions)))
        self.dimensions = self._handle.dimensions
        self.offset = (int(props.get("openslide.bounds-x", 0)), int(props.get("openslide.bounds-y", 0))) \
            if self.vendor == "mirax" else (0, 0)
        self.quickhash = props.get(openslide.PROPERTY_NAME_QUICKHASH1)

    def _local_file(self) -> Path:
        """The file OpenSlide opens for this path, after the checks OpenSlide would not make."""
        if not self.path.exists():
            raise SlideError("slide file not found", self.path)
        if self.path.is_dir():
            self.dicom_folder = slide_folder(self.path)
            return self.dicom_folder.instance
        if self.path.stat().st_size == 0:
            raise SlideError("slide file is empty (0 bytes)", self.path)
        if (series := volume_series_of(self.path)) is not None:
            try:  # OpenSlide reads the rest of the series from this file's folder: is it whole?
                self._series = slide_folder(self.path.parent, series)
            except SlideError as exc:
                raise SlideError(exc.problem, self.path) from None
        return self.path

    def _open(self) -> openslide.OpenSlide | DicomWebHandle:
        if self.url is not None:
            return DicomWebHandle(self.url)
        try:
            handle = openslide.OpenSlide(str(self._file))
        except openslide.OpenSlideUnsupportedFormatError:
            dicom = describe_dicom(self._file)  # before TIFF: a DICOM preamble may hold a TIFF header
            if dicom is not None:
                raise SlideError(dicom, self.path) from None
            with self._file.open("rb") as handle:
                magic = handle.read(4)
            if magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                raise SlideError("TIFF file is damaged or truncated (OpenSlide cannot read it)", self.path) from None
            raise SlideError("not a slide format OpenSlide can read", self.path) from None
        except openslide.OpenSlideError as exc:
            what = describe_dicom(self._file)
            raise SlideError(f"{what or 'slide cannot be opened'} ({exc})", self.path) from None
        except OSError as exc:
            raise SlideError(f"slide cannot be opened ({exc.strerror or exc})", self.path) from None
        handle.set_cache(openslide.OpenSlideCache(TILE_CACHE_BYTES))
        return handle

    def _microns_per_pixel(self, recorded: tuple[float, float] | None, rule: MppRule) -> tuple[float, str]:
        """(MPP, source): source is "slide", "fallback" (--mpp, slide records none) or "forced" (--force-mpp)."""
        if rule.forced is not None:
            return float(rule.forced), "forced"
        if recorded is None:
            if rule.fallback is not None:
                return float(rule.fallback), "fallback"
            raise SlideError("slide does not record microns per pixel; give it with --mpp (e.g. --mpp 0.25 "
                             "for a 40x scan)", self.path)
        mpp_x, mpp_y = recorded
        low, high = SCANNER_MPP_RANGE
        if not (low <= mpp_x <= high and low <= mpp_y <= high):
            raise SlideError(f"slide records {mpp_x:g} x {mpp_y:g} um per pixel, outside what slide scanners "
                             f"produce ({low:g}-{high:g}); not a scan, or a broken header: if the true value is "
                             "known, give it with --force-mpp", self.path)
        if abs(mpp_x - mpp_y) > 0.01 * mpp_x:
            raise SlideError(f"non-square pixels ({mpp_x:g} x {mpp_y:g} um) are not supported", self.path)
        return (mpp_x + mpp_y) / 2, "slide"

    def fingerprint(self) -> dict:
        """Identifies the slide in reports without hashing gigabytes: OpenSlide's quickhash + size + name."""
        digest = self.quickhash
        if digest is None:
            with self._file.open("rb") as handle:
                digest = hashlib.sha256(handle.read(4 * 1024 * 1024)).hexdigest()
        return {"path": self.url or str(self.path.absolute()), "name": self.name, "bytes": self.bytes,
                "quickhash": digest, "vendor": self.vendor, "mpp": self.mpp, "mpp_source": self.mpp_source,
                "mpp_recorded": self.mpp_recorded,
                "dimensions": list(self.dimensions), "dicom": self.dicom_ids}

    @property
    def name(self) -> str:
        """The file or folder name; a DICOMweb slide's series instance UID."""
        return self.url.rstrip("/").rsplit("/", 1)[-1] if self.url else self.path.name

    @property
    def bytes(self) -> int | None:
        """Size on disk (a DICOM folder: its series' files); None for a DICOMweb slide (never downloaded whole)."""
        if self.url is not None:
            return None
        return self.dicom_folder.bytes if self.dicom_folder else self.path.stat().st_size

    def dicom_header(self):
        """A DICOM slide's base VOLUME instance header (pixels not read), which DICOM results reference; None where
        pydicom is not installed (then no DICOM results can be written anyway)."""
        if self.url is not None:
            return self._handle.header
        try:
            import pydicom
        except ModuleNotFoundError:
            return None
        series = self.dicom_folder or self._series
        return pydicom.dcmread(series.instance if series else self._file, stop_before_pixels=True)

    @property
    def dicom_ids(self) -> dict[str, str | None] | None:
        """A DICOM slide's study and series instance UIDs and container (slide) id, as OpenSlide reads them; None for
        other formats. Results written back to an archive reference these."""
        if self.vendor != "dicom":
            return None
        props = self._handle.properties
        return {"study_uid": props.get("dicom.StudyInstanceUID"), "series_uid": props.get("dicom.SeriesInstanceUID"),
                "container": props.get("dicom.ContainerIdentifier")}

    def level_for(self, target_mpp: float) -> Level:
        """The level whose pixels are closest to, but not coarser than, `target_mpp` (level 0 if all are)."""
        fitting = [lv for lv in self.levels if self.mpp * lv.downsample <= target_mpp * (1 + 1e-6)]
        return max(fitting, key=lambda lv: lv.downsample) if fitting else self.levels[0]

    def read_region(self, x0: int, y0: int, level: Level, size: int) -> Image.Image:
        """RGBA image of size x size at `level`, top-left (x0, y0) in level-0 pixels (alpha 0 = not scanned).

        Kept as OpenSlide's PIL image: the white filter and the resize work on it without a NumPy copy."""
        try:
            return self._handle.read_region((x0, y0), level.index, (size, size))
        except openslide.OpenSlideError as exc:
            with self._lock:
                self._handle = self._open()
            raise SlideError(f"level {level.index} cannot be decoded at ({x0}, {y0}): a damaged or short tile or "
                             f"frame (OpenSlide: {exc})", self.path) from None

    def thumbnail(self, max_size: int) -> Image.Image:
        """The whole slide in at most max_size px. Converters may end a level in frames shorter than their tiles,
        which OpenSlide refuses; then the next finer level that decodes gives the picture (`thumbnail_note`
        says so), up to THUMBNAIL_MAX_PIXELS read."""
        try:
            return self._handle.get_thumbnail((max_size, max_size)).convert("RGB")
        except openslide.OpenSlideError as exc:
            first = str(exc)
        with self._lock:
            self._handle = self._open()  # a handle that failed a read is not reused
        downsample = max(self.dimensions[0] / max_size, self.dimensions[1] / max_size)
        broken = self._handle.get_best_level_for_downsample(downsample)
        for level in reversed(self.levels[:broken]):
            if level.width * level.height > THUMBNAIL_MAX_PIXELS:
                break
            try:
                image = self._handle.read_region((0, 0), level.index, (level.width, level.height))
            except openslide.OpenSlideError:
                with self._lock:
                    self._handle = self._open()
                continue
            picture = Image.new("RGB", image.size, "white")  # unscanned (transparent) areas white, as OpenSlide's
            picture.paste(image, mask=image.getchannel("A"))
            picture.thumbnail((max_size, max_size), Image.LANCZOS)
            self.thumbnail_note = (f"level {broken} cannot be decoded (OpenSlide: {first}); the slide's picture was "
                                   f"made from level {level.index}")
            return picture
        raise SlideError(f"no level small enough for a thumbnail can be decoded (OpenSlide: {first})", self.path)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def row_mpp_rule(row: dict[str, str], default: MppRule, line: int, path: Path) -> MppRule:
    """A slide row's MPP rule: a row's `mpp` / `force_mpp` column replaces the command line's value of the same
    kind, the other kind still applies (a forced value wins over a fallback); a row may not give both."""
    values = {}
    for column in ("mpp", "force_mpp"):
        text = row.get(column) or ""
        try:
            values[column] = float(text) if text else None
        except ValueError:
            raise ManifestError(f"line {line}: {column} {text!r} is not a number", path) from None
        if values[column] is not None and not (math.isfinite(values[column]) and values[column] > 0):
            raise ManifestError(f"line {line}: {column} {text!r} is not a positive number of microns per pixel",
                                path)
    if values["mpp"] is not None and values["force_mpp"] is not None:
        raise ManifestError(f"line {line}: give mpp (slide without MPP) or force_mpp, not both", path)
    return MppRule(fallback=values["mpp"] if values["mpp"] is not None else default.fallback,
                   forced=values["force_mpp"] if values["force_mpp"] is not None else default.forced)
