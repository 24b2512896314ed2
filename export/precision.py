"""fp16 and INT8 variants of an exported fp32 model; the float64 SVM head is never reduced.

fp16 (GPUs): onnxruntime.transformers' converter with input/output types kept (uint8 in, float32 out);
onnxconverter-common's converter breaks our in-graph Cast (microsoft/onnxconverter-common#320).
INT8 (CPUs): static QDQ quantisation, per-channel S8 weights / U8 activations, of the trunk (convolutions, and the
residual adds, pooling and input scaling ONNX Runtime quantises with them; never the head), calibrated on real
training patches. Mixed precision: the convolutions of the ResNet50 stages named in `Int8Recipe.keep_float` (e.g.
`trunk.layer4`, the stage that writes the embedding) stay float32 (benchmarks/int8.py measured which stages hurt
most); `train`'s accuracy control chooses single nodes by measurement instead (int8_search.py).
"""

from __future__ import annotations

import ast
import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from netorigin.calibration.errors import InputDataError

from .onnx_graph import is_head_node, strip_build_traces

PRECISIONS = ("fp32", "fp16", "int8")
# MinMax ranges are computed per this many calibration batches and merged: memory stays bounded (ONNX Runtime
# otherwise keeps every intermediate tensor of every patch: ~20 GB for 256 ResNet50 patches, measured). Histogram
# methods (percentile, entropy) keep them all and are not offered.
RANGE_BATCHES = 4
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class Int8Recipe:
    """How INT8 is calibrated: MinMax ranges; the stem (the graph's first convolution, 3 input channels) and the
    named ResNet50 stages (module prefixes) stay float32. Float stem by default: on the demo model it was as
    fast as an INT8 stem and closer to fp32 (benchmarks/int8.py). `search`: accuracy control (`train` only, which
    has the calibration patients to check against): the quantised nodes that move S most, found by measurement,
    stay float32 until the model passes its own fidelity check; `kept_nodes` names them (graph node names). `nncf`:
    for OpenVINO instead, NNCF's accuracy control judged on OpenVINO (export/nncf_int8.py)."""

    keep_float: tuple[str, ...] = ()
    float_stem: bool = True
    search: bool = False
    kept_nodes: tuple[str, ...] = ()
    nncf: bool = False
    nncf_iterations: int = 40  # NNCF's reverting rounds at most (each re-checks the calibration patients)

    def as_dict(self) -> dict:
        return {"method": "nncf-accuracy-control" if self.nncf else "minmax", "float_stem": self.float_stem,
                "keep_float": list(self.keep_float), "accuracy_control": self.search or self.nncf,
                "kept_float_nodes": list(self.kept_nodes)} | (
                    {"nncf_iterations": self.nncf_iterations} if self.nncf else {})


def _head_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if is_head_node(n)]


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Half-precision trunk; the head (float64) and the graph's inputs/outputs keep their types."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(copy.deepcopy(model), keep_io_types=True, node_block_list=_head_nodes(model))


class _PatchReader:
    """Feeds calibration patches to onnxruntime.quantization in small batches, a range of batches at a time
    (`CalibStridedMinMax`: the ranges of each stride are merged, so memory holds one stride's activations)."""

    def __init__(self, patches: np.ndarray, batch: int = CALIBRATION_BATCH,
                 on_batch: Callable[[], None] = lambda: None) -> None:
        self.batches = [patches[i:i + batch] for i in range(0, len(patches), batch)]
        self.on_batch = on_batch
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.pending = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict | None:
        batch = next(self.pending, None)
        if batch is None:
            return None
        self.on_batch()
        return {"patches": batch}


def _module(node: onnx.NodeProto) -> str | None:
    """The node's PyTorch module scope (e.g. `trunk.layer4.2.bn3`), from the exporter's name-scope metadata."""
    scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
    if not scopes:
        return None
    names = [n for n in ast.literal_eval(scopes) if n.startswith("trunk")]
    return names[-1] if names else ""


def node_modules(model: onnx.ModelProto) -> dict[str, str]:
    """Each node's module scope, for the nodes that carry one (empty for graphs without the exporter's traces)."""
    return {node.name: module for node in model.graph.node if (module := _module(node)) is not None}


def conv_modules(model: onnx.ModelProto) -> dict[str, str]:
    """Each convolution node's module scope (the exporter fused the batch norm into the convolution)."""
    convolutions = {node.name for node in model.graph.node if node.op_type == "Conv"}
    return {name: module for name, module in node_modules(model).items() if name in convolutions}


def kept_float_nodes(model: onnx.ModelProto, keep_float: tuple[str, ...], float_stem: bool = False) -> list[str]:
    """The convolutions inside the named stages (module prefixes such as `trunk.layer4` or `trunk.bn1`), and the
    stem (the first convolution) if asked."""
    modules = conv_modules(model)

    def inside(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    for prefix in keep_float:
        if not any(inside(module, prefix) for module in modules.values()):
            raise InputDataError(f"--int8-keep-float {prefix!r} names no convolution of the embedder (stages: "
                                 f"{', '.join(sorted({'.'.join(m.split('.')[:2]) for m in modules.values()}))})")
    stem = next((n.name for n in model.graph.node if n.op_type == "Conv"), None) if float_stem else None
    return [name for name, module in modules.items() if any(inside(module, prefix) for prefix in keep_float)] + \
        ([stem] if stem is not None and not any(inside(modules.get(stem, ""), p) for p in keep_float) else [])


def calibration_batches(patches: int) -> int:
    """How many batches INT8 calibration runs on `patches` patches (one progress step each)."""
    return -(-patches // CALIBRATION_BATCH)


def float_nodes(model: onnx.ModelProto, recipe: Int8Recipe) -> list[str]:
    """The nodes `recipe` keeps in float32: its stages' convolutions, its stem, and those its search kept."""
    return kept_float_nodes(model, recipe.keep_float, recipe.float_stem) + list(recipe.kept_nodes)


def to_int8(model: onnx.ModelProto, calibration_patches: np.ndarray, recipe: Int8Recipe = Int8Recipe(),
            on_batch: Callable[[], None] = lambda: None, ranges: Path | None = None) -> onnx.ModelProto:
    """Static QDQ INT8 of the trunk (except the recipe's float nodes), calibrated on uint8 training patches;
    `on_batch` is called as each calibration batch goes through the model. `ranges`: a file where the calibrated
    ranges are kept, so that further recipes of the same model skip calibration (ONNX Runtime's calibration
    cache)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        reader = _PatchReader(calibration_patches, on_batch=on_batch)
        stride = max(k for k in range(1, RANGE_BATCHES + 1) if len(reader) % k == 0)
        excluded = _head_nodes(model) + float_nodes(model, recipe)
        cache = {} if ranges is None else {"calibration_cache_path": ranges}  # onnxruntime >= 1.32
        quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax, **cache,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       "CalibStridedMinMax": stride})
        return onnx.load(str(dst))


def convert(model: onnx.ModelProto, precision: str, calibration_patches: np.ndarray | None = None,
            recipe: Int8Recipe = Int8Recipe(), on_batch: Callable[[], None] = lambda: None) -> onnx.ModelProto:
    """The model in `precision`, as it is shipped: without the exporter's traces (stripped after conversion, since
    the INT8 recipe finds its stages by the exporter's name scopes)."""
    if precision == "fp32":
        converted = copy.deepcopy(model)
    elif precision == "fp16":
        converted = to_fp16(model)
    elif precision == "int8":
        if calibration_patches is None or len(calibration_patches) == 0:
            raise ValueError("INT8 needs calibration patches")
        converted = to_int8(model, calibration_patches, recipe, on_batch)
    else:
        raise ValueError(f"unknown precision {precision!r}")
    strip_build_traces(converted)
    return converted


def quantised_nodes(model: onnx.ModelProto, recipe: Int8Recipe) -> list[str]:
    """The trunk's nodes that a QDQ model really computes in INT8, in graph order: a convolution whose weight is
    dequantised, or another node (residual add, pooling, the input scaling) that reads a dequantised tensor and
    writes one that is quantised again; never a node the recipe keeps float32, even when its neighbours' tensors
    pass through it quantised."""
    producer = {output: node.op_type for node in model.graph.node for output in node.output}
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    kept = set(float_nodes(model, recipe))

    def int8(node: onnx.NodeProto) -> bool:
        if node.op_type == "Conv":
            return len(node.input) > 1 and producer.get(node.input[1]) == "DequantizeLinear"
        return any(producer.get(name) == "DequantizeLinear" for name in node.input) and \
            any("QuantizeLinear" in consumers.get(name, ()) for name in node.output)

    return [node.name for node in model.graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and not is_head_node(node) and node.name not in kept and int8(node)]
