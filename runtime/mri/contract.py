"""The metadata contract of an MRI lesion model: what the ONNX file must say about its inputs (sequences, grid,
image size, scaling, region rule), its clinical encoding, its classes and its patient rule, so the runtime builds
exactly the groups it was trained on. Digests, identity and signatures are shared (runtime/model)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ModelError
from ..model.contract import FAMILY_KEY, MRI_FAMILY, PREFIX, check_digests, model_metadata, read_model_file
from .clinical import ClinicalField, encoding_from_json
from .groups import CLIP, SCALE_PERCENTILE
from .protocol import IMAGE_SIZE, MODEL_KINDS, SEQUENCES, SPACING_MM

MRI_SCHEMA_VERSION = 1
IMAGE_INPUT = "images"
CLINICAL_INPUT = "clinical"
PROBABILITY_OUTPUT = "probabilities"
PATIENT_RULE = "sum of the image groups' probability vectors; the class with the largest sum"

_TEXTS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
_FIELD = {"type": "object", "required": ["name", "kind"], "properties": {
    "name": {"type": "string"}, "kind": {"enum": ["number", "category", "yes_no", "above", "below"]},
    "categories": {"type": "array", "items": {"type": "string"}}, "limit": {"type": ["number", "null"]},
    "unit": {"type": "string"}, "scale": {"type": ["number", "null"]}}}
SCHEMA = {
    "type": "object",
    "required": [PREFIX + k for k in ("schema", "family", "classes", "inputs", "clinical", "patient_rule",
                                      "precision", "record", "provenance", "sha256", "verdict_sha256")],
    "properties": {
        PREFIX + "schema": {"const": MRI_SCHEMA_VERSION},
        PREFIX + "family": {"const": MRI_FAMILY},
        PREFIX + "classes": {**_TEXTS, "minItems": 2, "uniqueItems": True},
        PREFIX + "inputs": {"type": "object", "required": ["sequences", "spacing_mm", "image_size", "scaling",
                                                           "roi_rule", "kind"], "properties": {
            "sequences": {**_TEXTS, "items": {"enum": list(SEQUENCES)}, "uniqueItems": True,
                          "prefixItems": [{"const": "t2"}]},  # the region is drawn on the T2
            "spacing_mm": {"const": list(SPACING_MM)}, "image_size": {"const": IMAGE_SIZE},
            "scaling": {"const": {"percentile": SCALE_PERCENTILE, "clip": CLIP}},  # what groups.py does
            "roi_rule": {"type": "string"}, "kind": {"enum": sorted(MODEL_KINDS)}}},
        PREFIX + "clinical": {"oneOf": [{"type": "null"}, {"type": "array", "items": _FIELD, "minItems": 1}]},
        PREFIX + "patient_rule": {"const": PATIENT_RULE},
        PREFIX + "precision": {"type": "object", "required": ["precision"],
                               "properties": {"precision": {"const": "fp32"}}},
        PREFIX + "record": {"type": "object", "required": ["demo", "network", "trained_on_patients_sha256"],
                            "properties": {"demo": {"type": "boolean"}}},
        PREFIX + "provenance": {"type": "object"},
        PREFIX + "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        PREFIX + "verdict_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}


@dataclass(frozen=True)
class MriContract:
    """A verified MRI lesion model's bytes and metadata."""

    path: Path
    model_bytes: bytes
    meta: dict[str, Any]
    digests_verified: bool = True  # load_mri_contract recomputed both (what signing.verify_signature asks)

    @property
    def identity(self) -> dict[str, str]:
        return {"graph_sha256": self.meta[PREFIX + "sha256"], "verdict_sha256": self.meta[PREFIX + "verdict_sha256"]}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta[PREFIX + "classes"])

    @property
    def inputs(self) -> dict[str, Any]:
        return self.meta[PREFIX + "inputs"]

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(self.inputs["sequences"])

    @property
    def kind(self) -> str:
        return self.inputs["kind"]

    @cached_property
    def clinical(self) -> tuple[ClinicalField, ...] | None:
        table = self.meta[PREFIX + "clinical"]
        return None if table is None else encoding_from_json(table)

    @property
    def record(self) -> dict[str, Any]:
        return self.meta[PREFIX + "record"]

    @property
    def is_demo(self) -> bool:
        return bool(self.record["demo"])


def validate_mri_metadata(meta: dict[str, Any], path: str | Path) -> None:
    if meta.get(PREFIX + "schema") != MRI_SCHEMA_VERSION:
        raise ModelError(f"unknown MRI metadata schema version {meta.get(PREFIX + 'schema')!r} (this netorigin "
                         f"reads {MRI_SCHEMA_VERSION})", path)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(meta))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "metadata"
        raise ModelError(f"metadata does not match the MRI contract at {where!r}: "
                         f"{' '.join(error.message.split())[:200]}", path)


def load_mri_contract(path: str | Path) -> MriContract:
    """Read an MRI model, validate its metadata and check both digests."""
    path = Path(path)
    return mri_contract_from_bytes(read_model_file(path), path)


def mri_contract_from_bytes(model_bytes: bytes, path: str | Path) -> MriContract:
    """Validate MRI-model bytes (`path` names them in errors), checking both digests."""
    path = Path(path)
    meta = model_metadata(model_bytes, path)
    if meta.get(FAMILY_KEY) != MRI_FAMILY:
        raise ModelError("a slide model, not an MRI lesion model", path)
    validate_mri_metadata(meta, path)
    check_digests(model_bytes, meta, path)
    return MriContract(path, model_bytes, meta)
