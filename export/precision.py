"""fp16 and INT8 variants of an exported fp32 model; the float64 SVM head is never reduced.

fp16 (GPUs): onnxruntime.transformers' converter with input/output types kept (uint8 in, float32 out);
onnxconverter-common's converter breaks our in-graph Cast (microsoft/onnxconverter-common#320).
INT8 (CPUs): static QDQ quantisation, per-channel S8 weights / U8 activations, of the convolutions only,
calibrated on real training patches.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .onnx_graph import is_head_node

PRECISIONS = ("fp32", "fp16", "int8")


def _head_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if is_head_node(n)]


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Half-precision trunk; the head (float64) and the graph's inputs/outputs keep their types."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(copy.deepcopy(model), keep_io_types=True, node_block_list=_head_nodes(model))


class _PatchReader:
    """Feeds calibration patches to onnxruntime.quantization in small batches."""

    def __init__(self, patches: np.ndarray, batch: int = 8) -> None:
        self.batches = iter([patches[i:i + batch] for i in range(0, len(patches), batch)])

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {"patches": batch}


def to_int8(model: onnx.ModelProto, calibration_patches: np.ndarray) -> onnx.ModelProto:
    """Static QDQ INT8 of the convolutions, calibrated (MinMax) on uint8 training patches."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        quantize_static(str(src), str(dst), _PatchReader(calibration_patches), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_head_nodes(model),
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return onnx.load(str(dst))


def convert(model: onnx.ModelProto, precision: str, calibration_patches: np.ndarray | None = None
            ) -> onnx.ModelProto:
    if precision == "fp32":
        return model
    if precision == "fp16":
        return to_fp16(model)
    if precision == "int8":
        if calibration_patches is None or len(calibration_patches) == 0:
            raise ValueError("INT8 needs calibration patches")
        return to_int8(model, calibration_patches)
    raise ValueError(f"unknown precision {precision!r}")
