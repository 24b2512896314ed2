"""A slide in a DICOM archive, read frame by frame over DICOMweb (WADO-RS) through wsidicom; results stored back
with STOW-RS (the `dicom` extra).

A slide is named by its series URL, `http(s)://HOST/PREFIX/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}`
(PREFIX is the service root, e.g. `dicom-web`). `DicomWebHandle` offers the part of OpenSlide's API that `Slide`
uses, so the sampler, regions and reports read an archived slide as they read a file; nothing is downloaded whole.
Every request has a time-out; an unreachable server, a missing series or a slow answer is one line naming the URL.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import MissingDependencyError, OutputError, SlideError, first_line
from .dicom_input import DICOM_HINT, WSM_SOP_CLASS, check_complete, sop_class_name

SERIES_URL = re.compile(r"^(?P<root>https?://[^?#]+?)/studies/(?P<study>[0-9.]+)/series/(?P<series>[0-9.]+)/?$")
TIMEOUT_S = 30.0  # connect and read, per request
RETRY_ATTEMPTS = 2


def is_series_url(text: str | Any) -> bool:
    return isinstance(text, str) and text.startswith(("http://", "https://"))


def parse_series_url(url: str) -> tuple[str, str, str]:
    """(service root, study UID, series UID) of a DICOMweb series URL, or a one-line error."""
    match = SERIES_URL.match(url)
    if match is None:
        raise SlideError("not a DICOMweb series URL (expected http(s)://HOST/…/studies/{StudyInstanceUID}/series/"
                         "{SeriesInstanceUID})", url)
    return match["root"], match["study"], match["series"]


def _session():
    """A requests session whose every request times out (wsidicom and dicomweb-client set none)."""
    import requests

    class TimeoutAdapter(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            kwargs["timeout"] = kwargs.get("timeout") or TIMEOUT_S
            return super().send(request, **kwargs)

    session = requests.Session()
    for scheme in ("http://", "https://"):
        session.mount(scheme, TimeoutAdapter())
    return session


def dicomweb_client(root: str, session=None):
    """A DICOMweb client for the service root, with time-outs (on `session`, else a new one)."""
    try:
        from dicomweb_client import DICOMwebClient
    except ModuleNotFoundError:
        raise MissingDependencyError("reading over DICOMweb needs dicomweb-client: pip install 'netorigin[dicom]' "
                                     "(slides) or 'netorigin[mri]' (MRI series)") from None
    client = DICOMwebClient(url=root, session=session or _session())
    # dicomweb-client retries any failure 5 times with waits doubling from 1 s (31 s for a server that is down):
    # one retry after 0.5 s is enough for a busy archive (429, 503) without making a dead one wait.
    client.set_http_retry_params(retry=True, max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=500)
    return client


def request_failure(exc: BaseException) -> str:
    """What went wrong with a request, in words (the library's text follows in parentheses)."""
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return f"the DICOMweb server did not answer within {TIMEOUT_S:g} s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "the DICOMweb server cannot be reached"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        if exc.response.status_code == 404:
            return "the DICOMweb server has no such study or series (HTTP 404)"
        return f"the DICOMweb server answered HTTP {exc.response.status_code}"
    return f"the series cannot be read over DICOMweb ({first_line(exc)})"


_QUIET = threading.Lock()


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom warns (and logs) for every bulk-data element of DICOMweb metadata, which wsidicom fetches when it
    needs them: not the user's concern. Process-wide settings, so one thread at a time."""
    with _QUIET:
        logger = logging.getLogger("pydicom")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="No bulk data URI handler")
                yield
        finally:
            logger.setLevel(level)


class DicomWebHandle:
    """OpenSlide's interface, as far as `Slide` uses it, over a wsidicom WsiDicom opened on a DICOMweb series."""

    def __init__(self, url: str) -> None:
        try:
            from wsidicom import WsiDicom, WsiDicomWebClient
        except ModuleNotFoundError:
            raise MissingDependencyError(f"reading slides over DICOMweb needs wsidicom: {DICOM_HINT}") from None
        root, study, series = parse_series_url(url)
        self.url = url
        self._session = _session()
        self._client = dicomweb_client(root, self._session)
        self._wsi = None
        try:
            found = self._client.search_for_instances(study, series)
            if not found:  # wsidicom fails obscurely on an empty series
                raise SlideError("the DICOMweb server holds no instance of this study and series", url)
            classes = {str(item.get("00080016", {}).get("Value", [""])[0]) for item in found}
            if WSM_SOP_CLASS not in classes:
                kinds = ", ".join(sorted(sop_class_name(uid) for uid in classes if uid))
                raise SlideError(f"the series is not a whole-slide image (it holds {kinds or 'no SOP class'})", url)
            with _quiet_pydicom():
                self._wsi = WsiDicom.open_web(WsiDicomWebClient(self._client), study, series)
            self._levels = list(self._wsi.levels)
            headers = [ds for lv in self._levels for ds in lv.datasets]
            check_complete(series, [(Path(str(ds.SOPInstanceUID)), ds) for ds in headers], url)
            base = self._levels[0]
            mpp = (str(base.mpp.width), str(base.mpp.height))
        except Exception as exc:  # requests, wsidicom and pydicom raise unrelated types
            self.close()
            if isinstance(exc, SlideError):
                raise
            raise SlideError(request_failure(exc), url) from None
        self.level_dimensions = tuple((lv.size.width, lv.size.height) for lv in self._levels)
        width, height = self.level_dimensions[0]
        # as OpenSlide computes them: the mean of the two axes' ratios
        self.level_downsamples = tuple((width / w + height / h) / 2 for w, h in self.level_dimensions)
        self.dimensions = self.level_dimensions[0]
        self.header = base.datasets[0]
        identity = "|".join([study, series, *sorted(str(ds.SOPInstanceUID) for ds in headers), f"{self.dimensions}"])
        self.properties = {
            "openslide.vendor": "dicom", "openslide.mpp-x": mpp[0], "openslide.mpp-y": mpp[1],
            "openslide.quickhash-1": hashlib.sha256(identity.encode()).hexdigest(),
            "dicom.StudyInstanceUID": study, "dicom.SeriesInstanceUID": series,
            "dicom.ContainerIdentifier": str(self.header.get("ContainerIdentifier", "")) or None}

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        """RGBA like OpenSlide's: `location` in level-0 pixels, outside the image transparent."""
        downsample = self.level_downsamples[level]
        width, height = self.level_dimensions[level]
        x, y = math.floor(location[0] / downsample), math.floor(location[1] / downsample)
        canvas = Image.new("RGBA", size, (0, 0, 0, 0))
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + size[0], width), min(y + size[1], height)
        if right <= left or bottom <= top:
            return canvas
        try:
            inside = self._wsi.read_region((left, top), self._levels[level].level, (right - left, bottom - top))
        except Exception as exc:  # a frame the server cannot give, or cannot be decoded
            raise SlideError(f"level {level} cannot be read at {location}: {request_failure(exc)}", self.url) from None
        canvas.paste(inside.convert("RGBA"), (left - x, top - y))
        return canvas

    def get_best_level_for_downsample(self, downsample: float) -> int:
        fitting = [i for i, d in enumerate(self.level_downsamples) if d <= downsample * (1 + 1e-6)]
        return max(fitting, key=lambda i: self.level_downsamples[i]) if fitting else 0

    def get_thumbnail(self, size: tuple[int, int]) -> Image.Image:
        """The level closest to the picture's size, read whole (frame by frame), then shrunk."""
        downsample = max(self.dimensions[0] / size[0], self.dimensions[1] / size[1])
        level = self.get_best_level_for_downsample(downsample)
        image = self.read_region((0, 0), level, self.level_dimensions[level]).convert("RGB")
        image.thumbnail(size, Image.LANCZOS)
        return image

    def close(self) -> None:
        if self._wsi is not None:
            self._wsi.close()
        self._session.close()


def store(root: str, datasets: list) -> None:
    """STOW-RS each dataset into its own study on the service the slides came from, then ask the service for each
    one: a failure, a refusal (Failed SOP Sequence) or an object the server said it stored but does not hold (an
    archive's filter may drop it silently) is one line."""
    client = dicomweb_client(root)
    by_study: dict[str, list] = {}
    for dataset in datasets:
        by_study.setdefault(str(dataset.StudyInstanceUID), []).append(dataset)
    for study, members in by_study.items():
        try:
            answer = client.store_instances(members, study_instance_uid=study)
            refused = len(answer.get("FailedSOPSequence") or []) if answer is not None else 0
            missing = refused or sum(not client.search_for_instances(
                study, str(d.SeriesInstanceUID), search_filters={"SOPInstanceUID": str(d.SOPInstanceUID)})
                for d in members)
        except Exception as exc:  # requests and dicomweb-client raise unrelated types
            raise OutputError(f"storing the DICOM results failed: {request_failure(exc)}", root) from None
        if missing:
            raise OutputError(f"storing the DICOM results failed: the server does not hold {missing} of the "
                              f"{len(members)} objects sent (refused or filtered out)", root)
