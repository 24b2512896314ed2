"""The model metadata contract: keys, JSON Schema validation, content hash.

Scanner software can read the same metadata with nothing but onnxruntime and json
(`session.get_modelmeta().custom_metadata_map`); this module is our own reader and writer.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ConfigurationError, ModelError, first_line
from .bands import Band
from .protobuf_fields import WireFormatError, content_records, read_metadata, replace_metadata
from .record import ModelRecord

SCHEMA_VERSION = 3
# Every metadata field that can change a verdict or what a report says; `netorigin.verdict_sha256` is their digest.
VERDICT_FIELDS = ("classes", "patch", "case", "bands", "default_confidence", "precision", "record")
PREFIX = "netorigin."
# The case kind is one seam: a model without `netorigin.family` is a slide model (a bag of patches); an "mri" model
# classifies a liver lesion from MRI image groups (runtime/mri). Each family names the fields its verdict digest
# covers; both digests, signing and the identity work alike for both.
FAMILY_KEY = PREFIX + "family"
MRI_FAMILY = "mri"
MRI_VERDICT_FIELDS = ("family", "classes", "inputs", "clinical", "patient_rule", "precision", "record")
INPUT_NAME = "patches"
DECISION_OUTPUT = "decision"
EMBEDDING_OUTPUT = "embedding"
BAG_SCORE_OUTPUT = "bag_score"  # bag heads (ABMIL / KMIL): S for the whole bag of patches
ATTENTION_OUTPUT = "attention"  # bag heads: each patch's attention weight (sums to 1)
# Printed on every output of a model whose record says `demo` (random weights, synthetic slides).
DEMO_WARNING = "DEMO MODEL, NOT FOR DIAGNOSIS"


@cache
def metadata_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the decoded metadata."""
    text = resources.files(__package__).joinpath("model_metadata.schema.json").read_text()
    return json.loads(text)


def content_sha256(model_bytes: bytes) -> str:
    """SHA-256 of every top-level ModelProto record except metadata: changes iff the graph/weights do."""
    digest = hashlib.sha256()
    for record in content_records(model_bytes):
        digest.update(record)
    return digest.hexdigest()


def family(meta: dict[str, Any]) -> str:
    """The model family: "wsi" (no family key) or "mri"."""
    return meta.get(FAMILY_KEY, "wsi")


def verdict_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the verdict-deciding fields of the model's family: changes iff one of them
    does."""
    names = MRI_VERDICT_FIELDS if family(meta) == MRI_FAMILY else VERDICT_FIELDS
    fields = {key: meta.get(PREFIX + key) for key in names}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """Decoded metadata -> ONNX metadata_props strings (JSON values)."""
    return {key: json.dumps(value, sort_keys=True) for key, value in meta.items()}


def decode_metadata(props: dict[str, str], path: str | Path) -> dict[str, Any]:
    """ONNX metadata_props -> netorigin metadata dict with JSON values; other keys are ignored."""
    meta = {}
    for key, value in props.items():
        if key.startswith(PREFIX):
            try:
                meta[key] = json.loads(value, parse_constant=refuse_json_constant, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as exc:
                raise ModelError(f"metadata key {key!r} is not valid JSON ({exc.msg})", path) from None
            except RecursionError:
                raise ModelError(f"metadata key {key!r} is nested too deeply", path) from None
            except ValueError as exc:  # NaN / Infinity, or an integer literal of thousands of digits
                raise ModelError(f"metadata key {key!r} is not valid JSON ({first_line(exc, 120)})", path) from None
    return meta


def refuse_json_constant(name: str) -> float:
    """`parse_constant` for json.loads: NaN and Infinity are not JSON numbers (Python's parser accepts them)."""
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with a key given twice are refused: parsers disagree on which value counts."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("an object gives the same key twice")
    return obj


def validate_metadata(meta: dict[str, Any], path: str | Path) -> None:
    """Refuse metadata that is missing, of an unknown schema version, or not of the contract's shape."""
    if not meta:
        raise ModelError("not a netorigin model (no netorigin.* metadata)", path)
    version = meta.get(PREFIX + "schema")
    if version == 1:
        raise ModelError("metadata schema 1 (float32 decisions, no verdict digest) is no longer read: re-export "
                         "the model with this netorigin (`netorigin train` or `netorigin export`)", path)
    if version == 2:
        raise ModelError("metadata schema 2 keeps the demo flag, in-sample flag and fidelity checks outside the "
                         "verdict digest and is no longer read: re-export the model with this netorigin "
                         "(`netorigin train`, or `netorigin export` then `netorigin calibrate`)", path)
    if version != SCHEMA_VERSION:
        raise ModelError(f"unknown metadata schema version {version!r} (this netorigin reads "
                         f"{SCHEMA_VERSION})", path)
    validator = jsonschema.Draft202012Validator(metadata_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(meta))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "metadata"
        message = " ".join(error.message.split())[:200]
        raise ModelError(f"metadata does not match the contract at {where!r}: {message}", path)
    where = _non_finite(meta)
    if where is not None:
        raise ModelError(f"metadata holds a non-finite number at {where!r}", path)
    stored, default = [b["c"] for b in meta[PREFIX + "bands"]], meta[PREFIX + "default_confidence"]
    if bool(stored) != (meta[PREFIX + "record"]["calibration"] is not None):
        raise ModelError("metadata bands and the record's calibration disagree (one is empty, the other not)", path)
    if stored and (default is None or not any(abs(c - default) < 1e-9 for c in stored)):
        raise ModelError(f"metadata default_confidence {default!r} is not one of the stored band levels", path)


def _non_finite(value: Any, where: str = "metadata") -> str | None:
    """Where the first NaN or infinity sits (JSON Schema's `number` accepts them), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _non_finite(child, f"{where}/{key}")
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class ModelContract:
    """A validated model's bytes and decoded metadata."""

    path: Path
    model_bytes: bytes
    meta: dict[str, Any]
    # True only when `load_contract` recomputed both digests from these bytes and this metadata.
    digests_verified: bool = False

    @property
    def sha256(self) -> str:
        """Digest of the graph and weights."""
        return self.meta[PREFIX + "sha256"]

    @property
    def verdict_sha256(self) -> str:
        """Digest of every metadata field that can change a verdict (bands, field of view, rules, ...)."""
        return self.meta[PREFIX + "verdict_sha256"]

    @property
    def identity(self) -> dict[str, str]:
        """What names this model in reports and batch resume: both digests."""
        return {"graph_sha256": self.sha256, "verdict_sha256": self.verdict_sha256}

    def identity_difference(self, recorded: dict[str, Any]) -> str | None:
        return identity_difference(self.identity, recorded)

    @property
    def classes(self) -> dict[str, str]:
        return self.meta[PREFIX + "classes"]

    @property
    def class_names(self) -> tuple[str, str]:
        """(class 0, class 1): the verdict names; a positive decision means class 1."""
        return self.classes["0"], self.classes["1"]

    @property
    def patch(self) -> dict[str, Any]:
        return self.meta[PREFIX + "patch"]

    @property
    def patches_per_case(self) -> int:
        return int(self.meta[PREFIX + "case"]["patches_per_case"])

    @property
    def bag_head(self) -> bool:
        """An attention-MIL head: the whole case runs as one bag and its bag_score is S (case contract `score`)."""
        return self.meta[PREFIX + "case"].get("score") == "bag"

    @property
    def bands(self) -> list[Band]:
        return [Band(**b) for b in self.meta[PREFIX + "bands"]]

    @property
    def default_confidence(self) -> float | None:
        return self.meta[PREFIX + "default_confidence"]

    @property
    def provenance(self) -> dict[str, Any]:
        """What describes the build; shown, never used to decide anything."""
        return self.meta[PREFIX + "provenance"]

    @cached_property
    def record(self) -> ModelRecord:
        """The typed model record (inside the verdict digest): what reports and checks depend on; parsed once."""
        return ModelRecord.from_json(self.meta[PREFIX + "record"])

    @property
    def is_demo(self) -> bool:
        return self.record.demo

    @property
    def precision(self) -> str:
        return self.meta[PREFIX + "precision"]["precision"]

    def band(self, confidence: float | str | None) -> Band | None:
        """The stored band for `confidence` (a number or 'k/o'), the default when None; None if uncalibrated."""
        bands = self.bands
        if not bands:
            if confidence is not None:
                raise ConfigurationError("model has no calibrated bands (exported with --no-bands), so "
                                         "--confidence cannot be used", self.path)
            return None
        wanted = self.default_confidence if confidence is None else parse_confidence(confidence)
        for band in bands:
            if abs(band.c - wanted) < 1e-9:
                return band
        levels = ", ".join(f"{b.c:g}" for b in bands)
        raise ConfigurationError(f"confidence {confidence!r} is not a stored level (stored: {levels})", self.path)


def identity_difference(identity: dict[str, str], recorded: dict[str, Any]) -> str | None:
    """Why a recorded identity (a report's `model`) is not `identity`; None when both digests match."""
    for key, what in (("graph_sha256", "graph"), ("verdict_sha256", "bands, rules or record")):
        if recorded.get(key) != identity[key]:
            return (f"another model ({what}): the report's {key} is {str(recorded.get(key))[:16]}…, this "
                    f"model's {identity[key][:16]}…")
    return None


def parse_confidence(value: float | str) -> float:
    """Accept 0.875 or '7/8': a finite number from 0 to 1."""
    text = str(value).strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            number = int(num) / int(den)
        else:
            number = float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ConfigurationError(f"confidence {value!r} is not a number or a fraction k/o") from None
    if not 0 <= number <= 1:  # also refuses NaN
        raise ConfigurationError(f"confidence {value!r} is not between 0 and 1")
    return number


def read_model_file(path: str | Path) -> bytes:
    """A model file's bytes, or a one-line ModelError naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError("model file not found", path) from None
    except IsADirectoryError:
        raise ModelError("is a directory, not a model file", path) from None
    except OSError as exc:
        raise ModelError(f"cannot read model file ({exc.strerror})", path) from None


def model_metadata(model_bytes: bytes, path: str | Path) -> dict[str, Any]:
    """The decoded netorigin.* metadata of model bytes (not yet validated)."""
    if not model_bytes:
        raise ModelError("model file is empty", path)
    try:
        props = read_metadata(model_bytes)
    except (WireFormatError, UnicodeDecodeError) as exc:
        raise ModelError(f"not an ONNX model, or truncated or damaged ({exc})", path) from None
    return decode_metadata(props, path)


def check_digests(model_bytes: bytes, meta: dict[str, Any], path: str | Path) -> None:
    """Both stored digests recomputed: the graph and weights, and every verdict-deciding field of the family."""
    actual = content_sha256(model_bytes)
    if actual != meta[PREFIX + "sha256"]:
        raise ModelError(f"content hash mismatch: the graph or weights were changed after export "
                         f"(stored {meta[PREFIX + 'sha256'][:12]}…, actual {actual[:12]}…)", path)
    actual = verdict_sha256(meta)
    if actual != meta[PREFIX + "verdict_sha256"]:
        raise ModelError(f"verdict digest mismatch: the fields that decide a verdict (bands, geometry, rules, "
                         f"classes or the model record) were edited without netorigin (stored "
                         f"{meta[PREFIX + 'verdict_sha256'][:12]}…, actual {actual[:12]}…)", path)


def load_contract(path: str | Path, verify_hash: bool = True) -> ModelContract:
    """Read a slide model file, decode and validate its metadata, and check its content hash."""
    path = Path(path)
    return contract_from_bytes(read_model_file(path), path, verify_hash)


def contract_from_bytes(model_bytes: bytes, path: str | Path, verify_hash: bool = True) -> ModelContract:
    """Decode and validate slide-model bytes (`path` names them in errors), checking both digests."""
    path = Path(path)
    meta = model_metadata(model_bytes, path)
    if family(meta) != "wsi":
        raise ModelError(f"a {family(meta)} model, not a slide model: it takes {family(meta).upper()} cases", path)
    validate_metadata(meta, path)
    if verify_hash:
        check_digests(model_bytes, meta, path)
    return ModelContract(path=path, model_bytes=model_bytes, meta=meta, digests_verified=verify_hash)


def with_metadata(model_bytes: bytes, meta: dict[str, Any]) -> bytes:
    """Model bytes carrying `meta` (both digests recomputed) in place of their metadata; the graph is untouched.
    A signature no longer matches what it signed, so it is dropped (sign again after any change)."""
    meta = {k: v for k, v in meta.items() if k != PREFIX + "signature"}
    meta |= {PREFIX + "sha256": content_sha256(model_bytes), PREFIX + "verdict_sha256": verdict_sha256(meta)}
    return replace_metadata(model_bytes, encode_metadata(meta))
