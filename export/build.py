"""Fitted head + embedder + bands -> one self-describing ONNX model file."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from sklearn.pipeline import Pipeline

from netorigin.calibration.bands_io import check_bands_precision
from netorigin.calibration.errors import InputDataError
from netorigin.runtime.families import save_model
from netorigin.runtime.model.bands import BandTable
from netorigin.runtime.model.contract import with_metadata
from netorigin.runtime.model.record import CalibrationRecord

from .embedder import EmbedderInfo, PatchEmbedder
from .heads import HeadArrays, head_arrays
from .metadata import build_metadata, model_record
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


def check_head_embedder(head_info: dict, weights_sha256: str | None, where=None) -> None:
    """A head fitted on another embedder's embeddings cannot score this one's."""
    recorded = head_info.get("embedder", {})
    if recorded.get("weights_sha256") not in (None, weights_sha256):
        raise InputDataError(f"the head was fitted on embeddings of different embedder weights "
                             f"({recorded.get('name')}); use the same weights", where)


def build_model_bytes(embedder: PatchEmbedder, info: EmbedderInfo, head: dict,
                      bands: tuple[BandTable, CalibrationRecord] | None, *, demo: bool = False,
                      embedder_proto: onnx.ModelProto | None = None, precision: str = "fp32",
                      calibration_patches: np.ndarray | None = None, calibration_set: dict | None = None,
                      int8: Int8Recipe = Int8Recipe(), on_batch: Callable[[], None] = lambda: None) -> bytes:
    """Model bytes with metadata, in the requested precision.

    `embedder_proto` reuses an already exported embedder graph (it is copied, not modified);
    INT8 needs `calibration_patches` (uint8 training patches), described by `calibration_set`; `on_batch` is
    called per INT8 calibration batch.
    """
    head_info = head["info"]
    check_head_embedder(head_info, info.weights_sha256)
    check_precision(head["kind"], precision)
    if bands is not None:
        check_bands_precision(precision)
    base = export_embedder(embedder) if embedder_proto is None else copy.deepcopy(embedder_proto)
    model, arrays = with_head(base, head["pipeline"])
    converted = convert(model, precision, calibration_patches, int8, on_batch)
    table, calibration = bands if bands is not None else (None, None)
    record = model_record(info, head["kind"], head_info.get("fit_patients", ()), demo=demo, calibration=calibration)
    meta = build_metadata(info, arrays, table, record, patches_per_case=int(head_info["patches_per_case"]),
                          cohort=head_info.get("cohort", {}), precision=precision,
                          calibration_set=calibration_set if precision == "int8" else None)
    return with_metadata(converted.SerializeToString(), meta)


def write_model(path: str | Path, model_bytes: bytes) -> None:
    """A new model file, through the runtime's one writer (validated as the runtime will read it)."""
    save_model(path, model_bytes)
