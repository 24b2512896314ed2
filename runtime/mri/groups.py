"""From a case's DICOM series and T2 region of interest to the model's image groups (seed 002).

Every sequence is resampled (SimpleITK, linear) onto one grid: the T2's origin and direction at 0.7 x 0.7 x 7 mm.
The region of interest is drawn on the T2; resampled (nearest neighbour, at 1 mm across each section) onto the
same grid it lies on every other sequence through the series' DICOM geometry (origin, spacing, direction) — the
seed's propagation. Each 7-mm cross section that the region touches anywhere is one image group: the whole
section, one channel per sequence, each channel divided by its native volume's 99.5th percentile and clipped to
[0, 4], resized to 299 x 299 (the seed feeds the section "as a whole image"). SimpleITK is the `mri` extra,
imported only here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from ..errors import MissingDependencyError, MriInputError
from .protocol import IMAGE_SIZE, SEQUENCE_NAMES, SPACING_MM

INSTALL_HINT = "pip install 'netorigin[mri]'"
FRAME_OF_REFERENCE = "0020|0052"
SOP_INSTANCE_UID = "0008|0018"
NON_UNIFORM = "ITK_non_uniform_sampling_deviation"  # set by ITK's series reader when slice spacing varies
SUBSECTIONS = 7  # the region is resampled at 1 mm across each 7-mm section: a section it touches is kept
SCALE_PERCENTILE = 99.5
CLIP = 4.0


def sitk() -> ModuleType:
    try:
        module = importlib.import_module("SimpleITK")
    except ModuleNotFoundError:
        raise MissingDependencyError(f"MRI cases need SimpleITK: {INSTALL_HINT}") from None
    module.ProcessObject_SetGlobalWarningDisplay(False)  # what ITK warns about is checked here, in one line
    return module


@dataclass(frozen=True)
class Series:
    """One sequence's volume as read from its DICOM series, with its frame of reference."""

    sequence: str
    image: object  # SimpleITK.Image
    frame_of_reference: str
    path: Path
    instance_uids: tuple[str, ...] = ()  # SOP Instance UID of each slice, in the volume's slice order


@dataclass(frozen=True)
class ImageGroups:
    """The model input of one case: `pixels` [groups, channels, 299, 299] float32 in [0, 4], the resampled
    section index of each group, and the region of interest on each group (for the case page)."""

    pixels: np.ndarray
    sections: tuple[int, ...]
    roi: np.ndarray


def read_series(folder: str | Path, sequence: str) -> Series:
    """The one DICOM series in `folder` (a folder per sequence: two series in one folder are refused)."""
    itk, folder = sitk(), Path(folder)
    if not folder.is_dir():
        raise MriInputError(f"{SEQUENCE_NAMES[sequence]} series folder not found", folder)
    reader = itk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise MriInputError(f"no DICOM series in this {SEQUENCE_NAMES[sequence]} folder", folder)
    if len(ids) > 1:
        raise MriInputError(f"{len(ids)} DICOM series in one folder: give one folder per sequence", folder)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), ids[0]))
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise MriInputError(f"the {SEQUENCE_NAMES[sequence]} series cannot be read "
                            f"({str(exc).strip().splitlines()[-1]})", folder) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1 or image.GetSize()[2] < 1:
        raise MriInputError(f"the {SEQUENCE_NAMES[sequence]} series is not one greyscale volume", folder)
    if image.HasMetaDataKey(NON_UNIFORM):
        raise MriInputError(f"the {SEQUENCE_NAMES[sequence]} series' slices are not evenly spaced (repeated "
                            "positions, e.g. several b-values or echoes in one series): give one volume", folder)
    frame = reader.GetMetaData(0, FRAME_OF_REFERENCE).strip() if reader.HasMetaDataKey(0, FRAME_OF_REFERENCE) \
        else ""
    uids = tuple(reader.GetMetaData(i, SOP_INSTANCE_UID).strip() if reader.HasMetaDataKey(i, SOP_INSTANCE_UID)
                 else "" for i in range(image.GetSize()[2]))
    return Series(sequence, image, frame, folder, uids)


def _common_grid(t2, spacing=SPACING_MM) -> object:
    """The T2's origin and direction at `spacing`, covering the T2's whole extent (its first voxel's outer edge is
    the grid's; the last section may reach past the far edge)."""
    itk = sitk()
    old, new = np.array(t2.GetSpacing()), np.array(spacing)
    size = [max(1, int(np.ceil(n - 1e-6))) for n in np.array(t2.GetSize()) * old / new]
    direction = np.array(t2.GetDirection()).reshape(3, 3)
    origin = np.array(t2.GetOrigin()) + direction @ ((new - old) / 2)
    grid = itk.Image(size, itk.sitkFloat32)
    grid.SetSpacing(tuple(float(v) for v in new))
    grid.SetOrigin(tuple(float(v) for v in origin))
    grid.SetDirection(t2.GetDirection())
    return grid


def _inside(image, points: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Every point within the image's voxels (outer faces included, to a thousandth of a voxel)."""
    size = np.array(image.GetSize())
    for point in points:
        index = np.array(image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in point)))
        if np.any(index < -0.5 - tolerance) or np.any(index > size - 0.5 + tolerance):
            return False
    return True


def _roi_corners(roi) -> np.ndarray:
    """Physical corners of the bounding box of the region's voxels (their outer faces)."""
    mask = sitk().GetArrayFromImage(roi) != 0  # [z, y, x]
    if not mask.any():
        raise MriInputError("the region of interest is empty")
    zyx = np.argwhere(mask)
    low, high = zyx.min(axis=0)[::-1] - 0.5, zyx.max(axis=0)[::-1] + 0.5  # x, y, z continuous indices
    corners = [(x, y, z) for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    return np.array([roi.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in c)) for c in corners])


def check_alignment(series: Sequence[Series], roi, roi_path: str | Path) -> None:
    """Refuse, one line each, what cannot be aligned: another frame of reference than the T2's, a region not on
    the T2's grid, a region outside any sequence's volume."""
    t2 = series[0]
    for other in series[1:]:
        if t2.frame_of_reference and other.frame_of_reference and \
                other.frame_of_reference != t2.frame_of_reference:
            raise MriInputError(f"the {SEQUENCE_NAMES[other.sequence]} series has another frame of reference than "
                                "the T2: its geometry cannot carry the T2 region over", other.path)
    if roi.GetSize() != t2.image.GetSize() or not np.allclose(roi.GetSpacing(), t2.image.GetSpacing(), atol=1e-3) \
            or not np.allclose(roi.GetOrigin(), t2.image.GetOrigin(), atol=1e-2) \
            or not np.allclose(roi.GetDirection(), t2.image.GetDirection(), atol=1e-4):
        raise MriInputError("the region of interest is not on the T2 series' grid (size, spacing, origin and "
                            "direction must be the T2's)", roi_path)
    corners = _roi_corners(roi)
    for one in series:
        if not _inside(one.image, corners):
            raise MriInputError(f"the region of interest lies outside the {SEQUENCE_NAMES[one.sequence]} volume",
                                one.path)


def _scale(one: Series) -> float:
    """The sequence's own 99.5th percentile (on its native volume, so it does not depend on the T2's field of
    view): scanners' arbitrary units divided out, a lesion brighter than most of the volume keeps its contrast (a
    [low, high] percentile window would flatten it)."""
    scale = float(np.percentile(sitk().GetArrayViewFromImage(one.image), SCALE_PERCENTILE))
    if not np.isfinite(scale) or scale <= 0:
        raise MriInputError(f"the {SEQUENCE_NAMES[one.sequence]} series holds no signal (99.5th percentile "
                            f"{scale:g})", one.path)
    return scale


def _resized(section: np.ndarray, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(section.astype(np.float32), mode="F").resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                                    resample))


def image_groups(series: Sequence[Series], roi, roi_path: str | Path = "") -> ImageGroups:
    """The case's image groups, channels in the order of `series` (the T2 first)."""
    itk = sitk()
    if not series or series[0].sequence != "t2":
        raise ValueError("the T2 series comes first: the region of interest is drawn on it")
    check_alignment(series, roi, roi_path)
    grid = _common_grid(series[0].image)
    fine = _common_grid(series[0].image, (*SPACING_MM[:2], SPACING_MM[2] / SUBSECTIONS))
    fine_mask = itk.GetArrayFromImage(itk.Resample(roi, fine, itk.Transform(), itk.sitkNearestNeighbor, 0,
                                                   itk.sitkUInt8)) != 0  # [z * 7, y, x]
    z, y, x = grid.GetSize()[2], *fine_mask.shape[1:]
    padded = np.zeros((z * SUBSECTIONS, y, x), dtype=bool)
    padded[:min(len(fine_mask), len(padded))] = fine_mask[:len(padded)]
    mask = padded.reshape(z, SUBSECTIONS, y, x).any(axis=1)  # a section the region touches anywhere in its 7 mm
    sections = tuple(int(k) for k in np.flatnonzero(mask.any(axis=(1, 2))))
    if not sections:
        raise MriInputError("the region of interest covers no 7-mm section of the resampled grid", roi_path)
    channels = [np.clip(itk.GetArrayFromImage(itk.Resample(one.image, grid, itk.Transform(), itk.sitkLinear, 0.0,
                                                           itk.sitkFloat32)) / _scale(one), 0, CLIP)
                for one in series]
    pixels = np.stack([[_resized(channel[k], Image.Resampling.BILINEAR) for channel in channels]
                       for k in sections]).astype(np.float32)
    rois = np.stack([_resized(mask[k].astype(np.float32), Image.Resampling.NEAREST) for k in sections]) > 0.5
    return ImageGroups(pixels, sections, rois)
