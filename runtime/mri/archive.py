"""MRI series (and a DICOM SEG region) kept in a DICOM archive, named by their DICOMweb series URL as archived slides
are: `http(s)://HOST/PREFIX/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}`. An MRI series is a few megabytes,
not a slide's gigabytes, so it is fetched whole (WADO-RS, every request timed out) into a temporary folder for the
case and read there exactly as a local series folder; the folder goes when the case is done. Reports name such an
input by its URL and the digest of the instances fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..dicom.dicomweb import dicomweb_client, parse_series_url, request_failure
from ..errors import MriInputError, NetoriginError, first_line

UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # DICOM UID syntax: digits and dots, 64 at most


def fetch_series(url: str, folder: Path) -> Path:
    """Every instance of the series at `url`, written to `folder` as SOPInstanceUID.dcm; one line on failure."""
    try:
        root, study, series = parse_series_url(url)
    except NetoriginError as exc:
        raise MriInputError(exc.problem, url) from None
    client = dicomweb_client(root)  # without dicomweb-client: its own one line, naming the extra
    try:
        instances = client.retrieve_series(study, series)
    except Exception as exc:  # requests' and dicomweb-client's own errors, said in words
        raise MriInputError(request_failure(exc), url) from None
    if not instances:
        raise MriInputError("the DICOMweb server holds no instance of this study and series", url)
    uids = [str(getattr(dataset, "SOPInstanceUID", "")) for dataset in instances]
    if not all(UID.fullmatch(uid) and len(uid) <= 64 for uid in uids) or len(set(uids)) != len(uids):
        raise MriInputError("the DICOMweb server sent instances without a valid, unique SOP Instance UID", url)
    folder.mkdir(parents=True)
    for uid, dataset in zip(uids, instances, strict=True):
        try:
            dataset.save_as(folder / f"{uid}.dcm", enforce_file_format=True)
        except (ValueError, AttributeError, OSError) as exc:
            raise MriInputError(f"an instance from the DICOMweb server cannot be written as a DICOM file "
                                f"({first_line(exc)})", url) from None
    return folder


def fetch_region(url: str, folder: Path) -> Path:
    """The one instance (a DICOM Segmentation) of the region's series."""
    files = sorted(fetch_series(url, folder).iterdir())
    if len(files) != 1:
        raise MriInputError(f"a region of interest is one DICOM Segmentation instance; this series holds "
                            f"{len(files)} instances", url)
    return files[0]
