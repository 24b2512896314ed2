"""Fitted head + embedder + bands -> one self-describing ONNX model file."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
from sklearn.pipeline import Pipeline

from netorigin.calibration.errors import InputDataError
from netorigin.runtime.atomic import write_bytes_atomic
from netorigin.runtime.bands import BandTable
from netorigin.runtime.contract import with_metadata

from .embedder import EmbedderInfo, PatchEmbedder
from .heads import HeadArrays, head_arrays
from .metadata import build_metadata
from .mil import MIL_KINDS, MilHead
from .onnx_graph import attach_head, attach_mil_head, export_embedder
from .precision import Int8Recipe, convert


def with_head(embedder_proto: onnx.ModelProto, fitted: Pipeline | MilHead
              ) -> tuple[onnx.ModelProto, HeadArrays | MilHead]:
    """The full graph for a fitted head (a scikit-learn pipeline or a MIL head) and what its metadata describes."""
    if isinstance(fitted, MilHead):
        return attach_mil_head(embedder_proto, fitted), fitted
    arrays = head_arrays(fitted)
    return attach_head(embedder_proto, arrays), arrays


def check_precision(kind: str, precision: str) -> None:
    """fp16 / INT8 variants convert the embedder and keep the SVM head's float64 nodes; MIL heads export as fp32."""
    if kind in MIL_KINDS and precision != "fp32":
        raise InputDataError(f"the {kind} head exports as fp32 only (precision {precision} is for the "
                             "SVM-sum heads)")


def build_model_bytes(embedder: PatchEmbedder, info: EmbedderInfo, head: dict, bands: BandTable | None,
                      *, demo: bool = False, embedder_proto: onnx.ModelProto | None = None, precision: str = "fp32",
                      calibration_patches: np.ndarray | None = None, calibration_set: dict | None = None,
                      int8: Int8Recipe = Int8Recipe()) -> bytes:
    """Model bytes with metadata, in the requested precision.

    `embedder_proto` reuses an already exported embedder graph (it is copied, not modified);
    INT8 needs `calibration_patches` (uint8 training patches), described by `calibration_set`.
    """
    head_info = head["info"]
    if head_info.get("embedder", {}).get("weights_sha256") not in (None, info.weights_sha256):
        raise InputDataError("the head was fitted on embeddings of different embedder weights "
                             f"({head_info['embedder']['name']}); export with the same weights")
    check_precision(head["kind"], precision)
    base = export_embedder(embedder) if embedder_proto is None else copy.deepcopy(embedder_proto)
    model, arrays = with_head(base, head["pipeline"])
    return variant_bytes(model, info, arrays, head_info, bands, demo=demo, precision=precision,
                         calibration_patches=calibration_patches, calibration_set=calibration_set, int8=int8)


def variant_bytes(model: onnx.ModelProto, info: EmbedderInfo, arrays: HeadArrays | MilHead, head_info: dict,
                  bands: BandTable | None, *, demo: bool, precision: str = "fp32",
                  calibration_patches: np.ndarray | None = None, calibration_set: dict | None = None,
                  int8: Int8Recipe = Int8Recipe()) -> bytes:
    """One precision variant of an fp32 model, with its metadata."""
    converted = convert(model, precision, calibration_patches, int8)
    meta = build_metadata(info, arrays, bands, patches_per_case=int(head_info["patches_per_case"]),
                          cohort=head_info.get("cohort", {}), demo=demo, precision=precision,
                          calibration_set=calibration_set if precision == "int8" else None)
    return with_metadata(converted.SerializeToString(), meta)


def write_model(path: str | Path, model_bytes: bytes) -> None:
    write_bytes_atomic(path, model_bytes)
