"""DICOM whole-slide test slides, written by a third-party writer (wsidicomizer) from the synthetic pyramids."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames


def dicomize(slide: Path, out: Path) -> Path:
    """A folder of DICOM VL Whole Slide Microscopy instances of `slide`, one per pyramid level (wsidicomizer reading
    through OpenSlide, JPEG frames)."""
    converter = Path(sys.executable).with_name("wsidicomizer")
    subprocess.run([str(converter), "-i", str(slide), "-o", str(out), "--source", "openslide"], check=True,
                   capture_output=True, timeout=300)
    return out


def volume_instances(folder: Path) -> list[tuple[Path, pydicom.Dataset]]:
    """The folder's VOLUME instances with their headers, finest level first."""
    found = []
    for path in sorted(folder.glob("*.dcm")):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if header.ImageType[2] == "VOLUME":
            found.append((path, header))
    return sorted(found, key=lambda item: -int(item[1].TotalPixelMatrixColumns))


def shorten_last_frame(folder: Path, out: Path) -> Path:
    """A copy whose coarsest level ends in a frame half as tall as its tiles, as some converters' added levels do
    (OpenSlide: "Dimensional mismatch reading JPEG")."""
    shutil.copytree(folder, out)
    path, _ = volume_instances(out)[-1]
    dataset = pydicom.dcmread(path)
    frames = list(generate_frames(dataset.PixelData, number_of_frames=int(dataset.get("NumberOfFrames", 1))))
    image = Image.open(io.BytesIO(frames[-1]))
    short = io.BytesIO()
    image.crop((0, 0, image.width, image.height // 2)).save(short, format="JPEG")
    frames[-1] = short.getvalue()
    dataset.PixelData = encapsulate(frames)
    dataset.save_as(path)
    return out
