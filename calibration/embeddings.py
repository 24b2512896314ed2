"""Embeddings files: one row per patch (patient, label, specimen, slide, patch id, 2048-d float32).

The container the training side writes and calibration and evaluation read; numpy only.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netorigin.runtime.atomic import write_bytes_atomic

from .errors import InputDataError
from .labels import LABEL_NAMES


@dataclass
class Embeddings:
    """Patch embeddings with their patients; `labels` 0 pancreas, 1 small intestine, 2 other."""

    embeddings: np.ndarray
    patients: np.ndarray
    labels: np.ndarray
    specimens: np.ndarray
    slides: np.ndarray
    patch_ids: np.ndarray
    info: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, embeddings=self.embeddings.astype(np.float32), patients=self.patients,
                 labels=self.labels.astype(np.int64), specimens=self.specimens, slides=self.slides,
                 patch_ids=self.patch_ids, info=np.array(json.dumps(self.info)))
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Embeddings:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("embeddings", "patients", "labels", "specimens", "slides",
                                               "patch_ids", "info")}
        except FileNotFoundError:
            raise InputDataError("embeddings file not found", path) from None
        except (KeyError, ValueError, OSError) as exc:
            raise InputDataError(f"not a netorigin embeddings file ({exc})", path) from None
        info = json.loads(str(arrays.pop("info")))
        emb = cls(**arrays, info=info)
        if emb.embeddings.ndim != 2 or len({len(v) for v in (emb.embeddings, emb.patients, emb.labels)}) != 1:
            raise InputDataError("embeddings file has inconsistent array shapes", path)
        if not np.all(np.isfinite(emb.embeddings)):
            raise InputDataError("embeddings contain NaN or infinite values", path)
        return emb

    def select(self, mask: np.ndarray) -> Embeddings:
        return Embeddings(self.embeddings[mask], self.patients[mask], self.labels[mask], self.specimens[mask],
                          self.slides[mask], self.patch_ids[mask], self.info)

    @classmethod
    def of_case(cls, patient: str, label: int, vectors: np.ndarray) -> Embeddings:
        """One patient's patch vectors, as a head scores them (no slide or patch ids to record)."""
        n = len(vectors)
        return cls(vectors, np.array([patient] * n), np.full(n, label), np.array(["A"] * n), np.array(["-"] * n),
                   np.arange(n).astype(str))

    def check_made_by(self, weights_sha256: str, patches_per_case: int, where=None) -> None:
        """Refuse embeddings of another embedder, or sampled with another number of patches per case, for a model
        that will record this embedder and patch count."""
        recorded = self.info.get("embedder", {})
        if recorded.get("weights_sha256") != weights_sha256:
            raise InputDataError(f"these embeddings were made by another embedder ({recorded.get('name', 'unrecorded')}"
                                 f", weights sha256 {str(recorded.get('weights_sha256'))[:12]}…) than the model's "
                                 f"({weights_sha256[:12]}…)", where)
        most = int(np.unique(self.patients, return_counts=True)[1].max())
        if self.info.get("patches_per_case") != patches_per_case or most > patches_per_case:
            raise InputDataError(f"these embeddings hold {self.info.get('patches_per_case')} patches per case (up to "
                                 f"{most} per patient), the model {patches_per_case}: embed again with "
                                 f"--patches-per-case {patches_per_case}", where)

    @property
    def embedder_trained_on(self) -> list[str] | None:
        """Digests of the patients that trained the embedder that made these embeddings (finetune), if any."""
        return self.info.get("embedder", {}).get("trained_on_patients_sha256")

    def by_patient(self) -> Iterator[tuple[str, np.ndarray]]:
        """Each patient and the mask of its patches, in order of first appearance."""
        for patient in dict.fromkeys(self.patients.tolist()):
            yield str(patient), self.patients == patient

    def patient_table(self) -> list[tuple[str, int]]:
        """(patient, label) in order of first appearance."""
        seen: dict[str, int] = {}
        for patient, label in zip(self.patients.tolist(), self.labels.tolist()):
            seen.setdefault(patient, label)
        return list(seen.items())

    def digest(self) -> str:
        """SHA-256 over the vectors and their patients: names exactly what a head was fitted on."""
        digest = hashlib.sha256(np.ascontiguousarray(self.embeddings).tobytes())
        digest.update("\n".join(self.patients.tolist()).encode())
        return digest.hexdigest()

    def fit_record(self) -> dict:
        """What a head records about the embeddings it was fitted on (labelled patients only ever fit)."""
        fitted = self.select(self.labels < 2)
        return dict(self.info, cohort=self.cohort_counts(), fit_patients=sorted(set(fitted.patients.tolist())),
                    fit_embeddings_sha256=fitted.digest())

    def cohort_counts(self) -> dict:
        """Patients per label and patches: what a head and a model's provenance record about a cohort."""
        patients = self.patient_table()
        return {"patients": {name: sum(1 for _, lab in patients if lab == code)
                             for code, name in enumerate(LABEL_NAMES)},
                "patches": int(len(self.embeddings))}
