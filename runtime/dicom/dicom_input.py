"""DICOM whole-slide images given as a folder of instances: which file OpenSlide opens, and what else is there.

OpenSlide 4 reads a DICOM WSI from any one of its VOLUME instances and finds the rest of the series in the same
folder. A scanner's or archive's export is a folder, and may also hold the label, overview and thumbnail instances,
other series or other objects; this module picks the slide's VOLUME instance and refuses a folder that holds none or
two slides, naming them. Headers are read with pydicom (the `dicom` extra), pixels never.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependencyError, SlideError

WSM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
DICOM_HINT = "pip install 'netorigin[dicom]'"


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: 128-byte preamble, then "DICM"."""
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _pydicom():
    try:
        import pydicom
    except ModuleNotFoundError:
        raise MissingDependencyError(f"reading DICOM headers needs pydicom: {DICOM_HINT}") from None
    return pydicom


def _header(path: Path):
    """The header without pixel data, or None where the file is not DICOM."""
    pydicom = _pydicom()
    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
        return None


def sop_class_name(uid: str) -> str:
    """"CT Image Storage" for 1.2.840.10008.5.1.4.1.1.2, the UID itself where pydicom does not know it."""
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def describe_dicom(path: Path) -> str | None:
    """What a DICOM file is, for an error when OpenSlide cannot open it as a slide (None: not DICOM)."""
    if not is_dicom_file(path):
        return None
    try:
        header = _header(path)
    except MissingDependencyError:
        return "a DICOM file OpenSlide cannot open as a whole-slide image"
    if header is None:
        return "a damaged DICOM file (its header cannot be read)"
    uid = str(header.get("SOPClassUID", ""))
    if uid != WSM_SOP_CLASS:
        return f"a DICOM {sop_class_name(uid) if uid else 'file without a SOP class'}, not a whole-slide image"
    flavour = _value(header, "ImageType", 2)
    if flavour is not None and flavour != "VOLUME":
        return f"a DICOM whole-slide {flavour.lower()} image, not the slide's pyramid (VOLUME)"
    return "a DICOM whole-slide image OpenSlide cannot open (a series with missing or damaged instances?)"


@dataclass(frozen=True)
class DicomSlideFolder:
    """One slide in a folder: the VOLUME instance to open, the series' files and its identifiers."""

    instance: Path
    files: tuple[Path, ...]
    study_uid: str
    series_uid: str
    container: str | None

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def slide_folder(folder: Path, series_uid: str | None = None) -> DicomSlideFolder:
    """The one slide a folder holds (or, given `series_uid`, that series): its largest VOLUME instance; other
    series' files and non-DICOM files are ignored, two slides (two VOLUME series) or none are refused, and so is an
    incomplete series (check_complete)."""
    series: dict[str, list[tuple[Path, object]]] = {}
    others: set[str] = set()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        header = _header(path)
        if header is None:
            continue
        uid = str(header.get("SOPClassUID", ""))
        if uid != WSM_SOP_CLASS:
            others.add(sop_class_name(uid))
            continue
        series.setdefault(str(header.get("SeriesInstanceUID", "")), []).append((path, header))
    slides = {uid: members for uid, members in series.items()
              if any(_is_volume(header) for _, header in members) and series_uid in (None, uid)}
    if not slides:
        found = f" (it holds {', '.join(sorted(others))})" if others else ""
        raise SlideError(f"folder holds no DICOM whole-slide image (no VL Whole Slide Microscopy VOLUME "
                         f"instance){found}", folder)
    if len(slides) > 1:
        named = "; ".join(f"series {uid} (container {_container(members) or 'not given'})"
                          for uid, members in sorted(slides.items()))
        raise SlideError(f"folder holds {len(slides)} slides: {named}; give one slide per folder", folder)
    (uid, members), = slides.items()
    volumes = [(path, header) for path, header in members if _is_volume(header)]
    check_complete(uid, volumes, folder)
    instance, header = max(volumes, key=lambda m: (int(m[1].get("TotalPixelMatrixColumns", 0)), str(m[0])))
    return DicomSlideFolder(instance=instance, files=tuple(path for path, _ in members),
                            study_uid=str(header.get("StudyInstanceUID", "")), series_uid=uid,
                            container=_container(members))


def volume_series_of(path: Path) -> str | None:
    """The series instance UID of a whole-slide VOLUME instance (None for any other file, or where pydicom is not
    installed: OpenSlide alone decides then)."""
    try:
        header = _header(path)
    except MissingDependencyError:
        return None
    if header is None or str(header.get("SOPClassUID", "")) != WSM_SOP_CLASS or not _is_volume(header):
        return None
    return str(header.get("SeriesInstanceUID", "")) or None


def check_complete(uid: str, volumes: list, folder: Path) -> None:
    """Refuse a series OpenSlide would open without complaint although instances are missing: no base level (only
    resampled levels), a level's concatenation missing parts, or an instance with fewer frames than its tiles."""
    if not any(_value(h, "ImageType", 0) == "ORIGINAL" or _value(h, "ImageType", 3) == "NONE" for _, h in volumes):
        raise SlideError(f"series {uid} lacks its base level (every VOLUME instance here is a resampled level): "
                         "instances are missing", folder)
    parts: dict[str, list] = {}
    for path, header in volumes:
        concatenation = header.get("ConcatenationUID")
        if concatenation is not None:
            parts.setdefault(str(concatenation), []).append(header)
        elif header.get("DimensionOrganizationType") == "TILED_FULL":
            frames, needed = int(header.get("NumberOfFrames", 1)), _tiles(header)
            if frames < needed:
                raise SlideError(f"instance {path.name} of series {uid} holds {frames} of its level's {needed} "
                                 "frames: truncated", folder)
    for concatenation, headers in parts.items():
        total = int(headers[0].get("InConcatenationTotalNumber", len(headers)))
        if len(headers) < total:
            raise SlideError(f"series {uid} has {len(headers)} of the {total} instances of concatenation "
                             f"{concatenation}: instances are missing", folder)


def _tiles(header) -> int:
    across = -(-int(header.TotalPixelMatrixColumns) // int(header.Columns))
    down = -(-int(header.TotalPixelMatrixRows) // int(header.Rows))
    return across * down * int(header.get("TotalPixelMatrixFocalPlanes", 1)) * int(
        header.get("NumberOfOpticalPaths", 1))


def _value(header, keyword: str, index: int) -> str | None:
    values = list(header.get(keyword, []))
    return str(values[index]) if len(values) > index else None


def _is_volume(header) -> bool:
    return _value(header, "ImageType", 2) == "VOLUME"


def _container(members) -> str | None:
    values = {str(header.get("ContainerIdentifier", "")) for _, header in members} - {""}
    return ", ".join(sorted(values)) or None
