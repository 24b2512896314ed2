"""One MRI case -> the lesion class (seed 002): the case's series and T2 region become image groups, the model
gives each group a probability vector, the patient's result is their sum and its largest class."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InferenceError, ModelError, MriInputError, first_line
from ..session import inference_session
from ..signing import load_public_key, trusted_keys_from_env, verify_signature
from .clinical import encode_record
from .contract import CLINICAL_INPUT, IMAGE_INPUT, PROBABILITY_OUTPUT, MriContract, load_mri_contract
from .groups import ImageGroups, image_groups, read_roi, read_series
from .protocol import SEQUENCE_NAMES

ROI_NAMES = ("roi-t2.nii.gz", "roi-t2.nii", "roi-t2.nrrd", "roi-t2.mha")
GROUP_BATCH = 16


@dataclass(frozen=True)
class MriCase:
    """A patient's series folders (one per sequence), the T2 region of interest and the clinical record."""

    patient: str
    series: dict[str, Path]
    roi: Path
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

    @property
    def sums(self) -> np.ndarray:
        return self.probabilities.astype(np.float64).sum(axis=0)

    @property
    def lesion_class(self) -> str:
        return self.classes[int(np.argmax(self.sums))]


def input_fingerprints(case: MriCase, sequences: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What names a case's inputs in its report: each series' fingerprint and the region file's digest."""
    series = [{"sequence": s} | series_fingerprint(case.series[s]) for s in sequences]
    return series, {"path": str(case.roi.resolve()), "sha256": _file_digest(case.roi).hexdigest()}


def _file_digest(path: Path):
    """SHA-256 of a file, read in chunks (a DICOM file is never held whole for its digest)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256")


def series_fingerprint(folder: Path) -> dict[str, Any]:
    """What names a series in a report: its files' count and a digest of their bytes in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for path in files:
        digest.update(path.name.encode() + b"\0" + _file_digest(path).digest())
    return {"path": str(folder.resolve()), "files": len(files), "sha256": digest.hexdigest()}


class MriPredictor:
    """A verified MRI model and its ONNX Runtime session: `predict(case)` for each case."""

    def __init__(self, model: str | Path, device: str = "auto", threads: int | None = None,
                 trusted_keys: Sequence[str | Path] | None = None) -> None:
        self.contract: MriContract = load_mri_contract(model)
        keys = trusted_keys_from_env() if trusted_keys is None else list(trusted_keys)
        self.signature = verify_signature(self.contract, [load_public_key(k) for k in keys])  # before it runs
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
        return image_groups([read_series(case.series[s], s) for s in self.contract.sequences],
                            read_roi(case.roi), case.roi)

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

    def predict(self, case: MriCase) -> MriResult:
        """Every check (series, alignment, region, clinical record) before the model runs; one line on failure."""
        start = time.perf_counter()
        clinical = self.clinical_vector(case)
        groups = self.groups(case)
        prepared = time.perf_counter()
        probabilities = self.run(groups.pixels, clinical)
        done = time.perf_counter()
        series, roi = input_fingerprints(case, self.contract.sequences)
        record = case.clinical if clinical is not None else None
        return MriResult(case.patient, self.contract.classes, probabilities, groups, self.provider, series, roi,
                         record, {"prepare": prepared - start, "inference": done - prepared})
