"""The metadata a netorigin model carries (the contract in runtime/model_metadata.schema.json)."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata as importlib_metadata
from typing import Any

from netorigin.calibration.splits import patient_digests
from netorigin.runtime.model.bands import BandTable
from netorigin.runtime.model.contract import PREFIX, SCHEMA_VERSION
from netorigin.runtime.model.record import CalibrationRecord, HeadRecord, ModelRecord

from .embedder import IMAGENET_MEAN, IMAGENET_STD, EmbedderInfo
from .heads import HeadArrays
from .mil import MilHead

CLASSES = {"0": "pancreas", "1": "small_intestine"}
ALLOTMENT = ("patches split evenly over specimens, then over each specimen's slides; the remainder goes +1 to the "
             "first parts")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("netorigin", "torch", "torchvision", "scikit-learn", "onnx", "onnxruntime", "numpy"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def patch_contract(field_of_view_um: float = 497.0, pixels: int = 224) -> dict[str, Any]:
    return {
        "field_of_view_um": field_of_view_um, "pixels": pixels, "layout": "NHWC", "dtype": "uint8",
        "channels": "RGB", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 1 / 255,
        "normalisation": "in-graph", "resize": "PIL bilinear",
        "level_rule": "read at the pyramid level whose microns per pixel are closest to, but not coarser "
                      "than, field_of_view_um / pixels; read round(field_of_view_um / level_mpp) px, its top-left "
                      "snapped to the nearest pixel of that level; RGBA -> RGB by dropping alpha",
        "anchor": "centre",
        "white_filter": {"luma_above": 240, "max_fraction": 0.8},
    }


def case_contract(patches_per_case: int, bag: bool = False) -> dict[str, Any]:
    if bag:
        return {
            "patches_per_case": patches_per_case, "score": "bag",
            "vote_rule": "class 1 iff the bag score S > 0; S = 0 goes to class 0",
            "allotment": ALLOTMENT,
            "sum": "S = the bag_score output for all the case's patches in one run, in sampling order; each patch's "
                   "decision output is its contribution (S = their sum + the bag classifier's bias)",
            "band_rule": "uncertain iff lower < S < upper (strict), otherwise the sign of S",
        }
    return {
        "patches_per_case": patches_per_case, "score": "patch-sum",
        "vote_rule": "class 1 iff 2 * (patches with decision > 0) > patches_per_case; ties go to class 0",
        "allotment": ALLOTMENT,
        "sum": "S = float64 sum of the decision values in sampling order",
        "band_rule": "uncertain iff lower < S < upper (strict), otherwise the majority vote",
    }


def model_record(embedder: EmbedderInfo, head_kind: str, fit_patients: Iterable[str], *, demo: bool,
                 calibration: CalibrationRecord | None = None) -> ModelRecord:
    """A new model's record: the embedder and head it was built from (fit patients as digests) and the demo flag."""
    return ModelRecord(demo=demo, embedder=embedder.record(),
                       head=HeadRecord(head_kind, tuple(patient_digests(fit_patients))), calibration=calibration)


def build_metadata(embedder: EmbedderInfo, head: HeadArrays | MilHead, bands: BandTable | None, record: ModelRecord,
                   *, patches_per_case: int, cohort: dict[str, Any], training: dict[str, Any] | None = None,
                   precision: str = "fp32", calibration_set: dict | None = None,
                   field_of_view_um: float = 497.0) -> dict[str, Any]:
    """Decoded metadata (the digests are added when the bytes are written). Nothing here names the build machine's
    folders or the time, so the same inputs give the same bytes."""
    return {
        PREFIX + "schema": SCHEMA_VERSION,
        PREFIX + "classes": CLASSES,
        PREFIX + "patch": patch_contract(field_of_view_um),
        PREFIX + "case": case_contract(patches_per_case, bag=isinstance(head, MilHead)),
        PREFIX + "bands": bands.to_json() if bands else [],
        PREFIX + "default_confidence": bands.default_confidence if bands else None,
        PREFIX + "precision": {"precision": precision, "calibration_set": calibration_set},
        PREFIX + "record": record.to_json(),
        PREFIX + "provenance": {
            "embedder": embedder.to_json(), "head": head.describe(), "cohort": cohort, "training": training,
            "bands_note": None if bands else "exported with --no-bands: no abstention band, majority vote only",
            "versions": library_versions(),
        },
    }
