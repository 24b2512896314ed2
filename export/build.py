"""Fitted head + embedder + bands -> one self-describing ONNX model file."""

from __future__ import annotations

import copy
from pathlib import Path

import joblib
import onnx

from netorigin.calibration.bands import BandTable
from netorigin.runtime.atomic import write_bytes_atomic
from netorigin.runtime.contract import with_metadata
from netorigin.runtime.errors import InputDataError

from .embedder import EmbedderInfo, PatchEmbedder
from .heads import head_arrays
from .metadata import build_metadata
from .onnx_graph import attach_head, export_embedder


def save_head(path: str | Path, pipeline, *, kind: str, info: dict) -> None:
    """The fitted head with what export needs to check and describe it (embedder, cohort, patches/case)."""
    import io

    buffer = io.BytesIO()
    joblib.dump({"pipeline": pipeline, "kind": kind, "info": info}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_head(path: str | Path) -> dict:
    try:
        head = joblib.load(path)
    except FileNotFoundError:
        raise InputDataError("head file not found", path) from None
    except Exception as exc:  # joblib/pickle raise many types for foreign files
        raise InputDataError(f"not a netorigin head file ({type(exc).__name__})", path) from None
    if not isinstance(head, dict) or "pipeline" not in head:
        raise InputDataError("not a netorigin head file", path)
    return head


def build_model_bytes(embedder: PatchEmbedder, info: EmbedderInfo, head: dict, bands: BandTable | None,
                      *, demo: bool = False, embedder_proto: onnx.ModelProto | None = None
                      ) -> tuple[bytes, onnx.ModelProto]:
    """fp32 model bytes with metadata (and the proto, for deriving fp16/INT8 variants).

    `embedder_proto` reuses an already exported embedder graph (it is copied, not modified).
    """
    head_info = head["info"]
    if head_info.get("embedder", {}).get("weights_sha256") not in (None, info.weights_sha256):
        raise InputDataError("the head was fitted on embeddings of different embedder weights "
                             f"({head_info['embedder']['name']}); export with the same weights")
    arrays = head_arrays(head["pipeline"])
    base = export_embedder(embedder) if embedder_proto is None else copy.deepcopy(embedder_proto)
    model = attach_head(base, arrays)
    meta = build_metadata(info, arrays, bands, patches_per_case=int(head_info["patches_per_case"]),
                          cohort=head_info.get("cohort", {}), demo=demo)
    return with_metadata(model.SerializeToString(), meta), model


def write_model(path: str | Path, model_bytes: bytes) -> None:
    write_bytes_atomic(path, model_bytes)
