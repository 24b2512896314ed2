"""The T2 region of interest, in any of the forms a reader draws it: an image on the T2 series' grid that SimpleITK
reads (NIfTI, NRRD, MHA; nonzero inside), or a DICOM Segmentation (SEG) whose frames reference the T2 series'
instances, as PACS viewers and highdicom write it (every segment counts: the region is their union). Either becomes
a mask image with the T2's geometry; what the case's other sequences see of it is decided in groups.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import MissingDependencyError, MriInputError, first_line
from .groups import INSTALL_HINT, Series, sitk

DICOM_SUFFIXES = (".dcm", ".dicom")


def _highdicom() -> ModuleType:
    try:
        return importlib.import_module("highdicom")
    except ModuleNotFoundError:
        raise MissingDependencyError(f"a DICOM Segmentation region needs highdicom: {INSTALL_HINT}") from None


def is_dicom_file(path: Path) -> bool:
    """A DICOM file by its suffix or by its preamble's DICM magic."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with path.open("rb") as handle:
        return handle.read(132)[128:] == b"DICM"


def read_roi(path: str | Path, t2: Series) -> object:
    """The region of interest as a SimpleITK mask image (for a SEG: on the T2's geometry; for an image file: as
    written, checked against the T2's grid later)."""
    path = Path(path)
    if not path.is_file():
        raise MriInputError("region of interest file not found", path)
    if is_dicom_file(path):
        return segmentation_mask(path, t2)
    try:
        return sitk().ReadImage(str(path))
    except RuntimeError as exc:
        raise MriInputError(f"the region of interest cannot be read ({str(exc).strip().splitlines()[-1]})",
                            path) from None


def segmentation_mask(path: Path, t2: Series) -> object:
    """A DICOM SEG's segments on the T2 series' slices, as a mask image with the T2's geometry."""
    hd = _highdicom()
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # pydicom's and highdicom's own errors: not a readable SEG
        raise MriInputError(f"not a DICOM Segmentation highdicom reads ({first_line(exc)})", path) from None
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    if not t2.instance_uids or not referenced & set(t2.instance_uids):
        raise MriInputError("the DICOM Segmentation does not reference the T2 series' instances (drawn on another "
                            "series?): the region must be drawn on the T2", path)
    if referenced - set(t2.instance_uids):
        raise MriInputError(f"the DICOM Segmentation references {len(referenced - set(t2.instance_uids))} "
                            "instance(s) outside the T2 series", path)
    try:
        pixels = seg.get_pixels_by_source_instance(list(t2.instance_uids), combine_segments=True,
                                                   assert_missing_frames_are_empty=True)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise MriInputError(f"the DICOM Segmentation's frames cannot be placed on the T2's slices "
                            f"({first_line(exc)})", path) from None
    width, height, depth = t2.image.GetSize()
    if pixels.shape != (depth, height, width):
        raise MriInputError(f"the DICOM Segmentation's frames are {pixels.shape[2]} x {pixels.shape[1]} pixels, the "
                            f"T2's slices {width} x {height}", path)
    mask = sitk().GetImageFromArray((pixels != 0).astype(np.uint8))
    mask.CopyInformation(t2.image)
    return mask
