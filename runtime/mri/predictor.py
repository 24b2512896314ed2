"""One MRI case -> the lesion class (seed 002): the case's series and T2 region become image groups, the model
gives each group a probability vector, the patient's result is their sum and its largest class."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..dicom.dicomweb import is_series_url
from ..engines.session import inference_session
from ..errors import InferenceError, ModelError, MriInputError, first_line
from ..model.signing import PublicKey, load_public_key, trusted_keys_from_env, verify_signature
from .archive import fetch_region, fetch_series
from .clinical import encode_record
from .contract import CLINICAL_INPUT, IMAGE_INPUT, PROBABILITY_OUTPUT, MriContract, load_mri_contract
from .groups import ImageGroups, image_groups, read_series
from .occlusion import occlusion_maps
from .protocol import SEQUENCE_NAMES
from .roi import read_roi

ROI_NAMES = ("roi-t2.nii.gz", "roi-t2.nii", "roi-t2.nrrd", "roi-t2.mha", "roi-t2.dcm")
GROUP_BATCH = 16


@dataclass(frozen=True)
class MriCase:
    """A patient's series (a folder per sequence, or a DICOMweb series URL), the T2 region of interest (a file, or
    the DICOMweb series URL of a DICOM SEG) and the clinical record."""

    patient: str
    series: dict[str, Path | str]
    roi: Path | str
    clinical: dict[str, str] | None = None

    @classmethod
    def from_folder(cls, folder: str | Path, patient: str | None = None, roi: str | Path | None = None,
                    clinical: dict[str, str] | None = None) -> MriCase:
        """A case folder with one sub-folder per sequence, named as the sequences are (t2, dwi_b800, ...), and
        the region as roi-t2.nii.gz (or `roi`)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise MriInputError("MRI case folder not found", folder)
        found = roi or next((folder / n for n in ROI_NAMES if (folder / n).is_file()), folder / ROI_NAMES[0])
        return cls(patient or folder.name, {s: folder / s for s in SEQUENCE_NAMES}, Path(found), clinical)


@contextmanager
def fetched(case: MriCase, sequences: tuple[str, ...]) -> Iterator[tuple[MriCase, dict[str, str]]]:
    """The case with its archived series (those of `sequences`) and region fetched into a temporary folder, and what
    each fetched input was called (sequence or "roi" -> URL). A case without URLs is given back as it is."""
    urls = {s: str(case.series[s]) for s in sequences if is_series_url(case.series[s])}
    if is_series_url(case.roi):
        urls["roi"] = str(case.roi)
    if not urls:
        yield case, urls
        return
    with tempfile.TemporaryDirectory(prefix="netorigin-mri-") as temporary:
        base = Path(temporary)
        series = {s: fetch_series(urls[s], base / s) if s in urls else case.series[s] for s in sequences}
        roi = fetch_region(urls["roi"], base / "roi") if "roi" in urls else case.roi
        yield replace(case, series=series, roi=roi), urls


@dataclass
class MriResult:
    patient: str
    classes: tuple[str, ...]
    probabilities: np.ndarray  # [groups, classes]
    groups: ImageGroups
    provider: str
    series: list[dict[str, Any]]
    roi: dict[str, Any]
    clinical: dict[str, str] | None  # the record the model took (None: a model without clinical data)
    timings: dict[str, float] = field(default_factory=dict)
    occlusion: np.ndarray | None = None  # [groups, grid, grid] for the case page (runtime/mri/occlusion.py)

    @property
    def sums(self) -> np.ndarray:
        return self.probabilities.astype(np.float64).sum(axis=0)

    @property
    def lesion_class(self) -> str:
        return self.classes[int(np.argmax(self.sums))]


def input_fingerprints(case: MriCase, sequences: Sequence[str], urls: dict[str, str] | None = None
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What names a case's inputs in its report: each series' fingerprint and the region file's digest, from local
    files (`urls`: where fetched ones came from, named in their place)."""
    urls = urls or {}
    series = [{"sequence": s} | series_fingerprint(case.series[s]) | ({"path": urls[s]} if s in urls else {})
              for s in sequences]
    return series, {"path": urls.get("roi") or str(Path(case.roi).resolve()),
                    "sha256": file_digest(Path(case.roi)).hexdigest()}


def file_digest(path: Path):
    """SHA-256 of a file, read in chunks (a DICOM file is never held whole for its digest)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256")


def series_fingerprint(folder: Path) -> dict[str, Any]:
    """What names a series in a report: its files' count and a digest of their bytes in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for path in files:
        digest.update(path.name.encode() + b"\0" + file_digest(path).digest())
    return {"path": str(folder.resolve()), "files": len(files), "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class MriSettings:
    """Everything an MriPredictor is built from, as plain values: what a cluster worker needs to build the same
    one (the trusted keys as their bytes: a worker trusts what the driver trusted, not a file at some path)."""

    model: str
    device: str = "auto"
    threads: int | None = None
    trusted_keys: tuple[PublicKey, ...] = ()

    def build(self) -> MriPredictor:
        return MriPredictor(self.model, self.device, self.threads, self.trusted_keys)


class MriPredictor:
    """A verified MRI model and its ONNX Runtime session: `predict(case)` for each case."""

    def __init__(self, model: str | Path, device: str = "auto", threads: int | None = None,
                 trusted_keys: Sequence[str | Path | PublicKey] | None = None) -> None:
        self.contract: MriContract = load_mri_contract(model)
        keys = tuple(k if isinstance(k, PublicKey) else load_public_key(k)
                     for k in (trusted_keys_from_env() if trusted_keys is None else trusted_keys))
        self.signature = verify_signature(self.contract, list(keys))  # before it runs
        self.settings = MriSettings(str(Path(model).resolve()), device, threads, keys)
        self.session, self.provider = inference_session(self.contract.model_bytes, self.contract.path, device,
                                                        threads)
        names = {i.name for i in self.session.get_inputs()}
        wanted = {IMAGE_INPUT} | ({CLINICAL_INPUT} if self.contract.clinical else set())
        if names != wanted or PROBABILITY_OUTPUT not in {o.name for o in self.session.get_outputs()}:
            raise ModelError(f"the graph's inputs {sorted(names)} are not the contract's {sorted(wanted)}, or it "
                             f"lacks '{PROBABILITY_OUTPUT}'", self.contract.path)

    def clinical_vector(self, case: MriCase) -> np.ndarray | None:
        if self.contract.clinical is None:
            return None
        if case.clinical is None:
            raise MriInputError(f"patient {case.patient}: Model {self.contract.kind} needs the clinical record "
                                "(--clinical CSV with a row for this patient)")
        return encode_record(case.clinical, self.contract.clinical, case.patient)

    def groups(self, case: MriCase) -> ImageGroups:
        """The case's image groups as this model takes them (its sequences, T2 first)."""
        series = [read_series(case.series[s], s) for s in self.contract.sequences]
        return image_groups(series, read_roi(case.roi, series[0]), case.roi)

    def run(self, pixels: np.ndarray, clinical: np.ndarray | None) -> np.ndarray:
        """Each group's probability vector."""
        out = []
        for start in range(0, len(pixels), GROUP_BATCH):
            batch = pixels[start:start + GROUP_BATCH]
            feed = {IMAGE_INPUT: batch}
            if clinical is not None:
                feed[CLINICAL_INPUT] = np.repeat(clinical[None, :], len(batch), axis=0)
            try:
                out.append(self.session.run([PROBABILITY_OUTPUT], feed)[0])
            except Exception as exc:  # onnxruntime's own exception types
                raise InferenceError(f"ONNX Runtime failed ({first_line(exc)})", self.contract.path) from None
        probabilities = np.concatenate(out)
        if probabilities.shape[1:] != (len(self.contract.classes),) or not np.isfinite(probabilities).all():
            raise InferenceError(f"the model gave {probabilities.shape[1:]} probabilities per group, or non-finite "
                                 f"ones, for {len(self.contract.classes)} classes: no result", self.contract.path)
        return probabilities

    def predict(self, case: MriCase, occlusion_grid: int | None = None) -> MriResult:
        """Every check (series, alignment, region, clinical record) before the model runs; one line on failure.
        `occlusion_grid`: also each group's occlusion map on that grid (for the case page)."""
        start = time.perf_counter()
        clinical = self.clinical_vector(case)
        with fetched(case, self.contract.sequences) as (local, urls):
            groups = self.groups(local)
            series, roi = input_fingerprints(local, self.contract.sequences, urls)
        prepared = time.perf_counter()
        probabilities = self.run(groups.pixels, clinical)
        done = time.perf_counter()
        result = MriResult(case.patient, self.contract.classes, probabilities, groups, self.provider, series, roi,
                           case.clinical if clinical is not None else None,
                           {"prepare": prepared - start, "inference": done - prepared})
        if occlusion_grid is not None:
            result.occlusion = occlusion_maps(lambda images: self.run(images, clinical), groups.pixels, probabilities,
                                              result.classes.index(result.lesion_class), occlusion_grid)
            result.timings["occlusion"] = time.perf_counter() - done
        return result
