"""Build the single ONNX graph: uint8 patches -> ResNet50 embedding -> PCA -> classifier decision.

Why the head is written with standard ONNX ops in float64 rather than skl2onnx's `SVMClassifier`:
`SVMClassifier` (ai.onnx.ml) has no CUDA kernel, stores its parameters as float32 attributes and runs
its RBF loop single-threaded; measured on 2 cores (benchmarks/run.py, 1924 support vectors) it is 22x slower per
100-patch case (217 vs 9.8 ms) and less exact (1.6e-5 vs 3e-8). The float64 head runs on the CPU and CUDA providers,
is immune to TF32, and matches scikit-learn's `decision_function` to ~1e-8 per patch.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from netorigin.runtime.model.contract import (
    ATTENTION_OUTPUT,
    BAG_SCORE_OUTPUT,
    DECISION_OUTPUT,
    EMBEDDING_OUTPUT,
    INPUT_NAME,
)

from .embedder import PatchEmbedder
from .heads import HeadArrays
from .mil import MilHead

MAX_IR_VERSION = 10  # older ONNX Runtime builds refuse newer IR versions
PATCH_PIXELS = 224


def export_embedder(embedder: PatchEmbedder) -> onnx.ModelProto:
    """The embedder alone (uint8 NHWC -> float32 [N, 2048]) via the dynamo exporter, one file, dynamic batch."""
    dummy = torch.zeros((2, PATCH_PIXELS, PATCH_PIXELS, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(embedder, (dummy,), dynamo=True, external_data=False,
                                    input_names=[INPUT_NAME], output_names=[EMBEDDING_OUTPUT],
                                    dynamic_shapes={"patches": {0: batch}}, verbose=False)
    return program.model_proto


def strip_build_traces(model: onnx.ModelProto) -> None:
    """Clear every doc_string and metadata_props below the model (nodes, graphs, subgraphs, functions, value infos):
    the PyTorch exporter writes stack traces there that name the install folder, so without this the same inputs
    built from two folders give two graph digests, and every model names a folder of the machine that built it.
    The model's own metadata_props (the netorigin contract) are kept."""
    model.ClearField("doc_string")
    for descriptor, value in model.ListFields():
        if descriptor.message_type is not None and descriptor.name != "metadata_props":
            for child in (value if _is_repeated(descriptor) else (value,)):
                _strip_message(child)


def _is_repeated(descriptor) -> bool:
    repeated = getattr(descriptor, "is_repeated", None)  # newer protobuf; older ones only have `label`
    return repeated if repeated is not None else descriptor.label == descriptor.LABEL_REPEATED


def _strip_message(message) -> None:
    for name in ("metadata_props", "doc_string"):
        if name in message.DESCRIPTOR.fields_by_name:
            message.ClearField(name)
    for descriptor, value in message.ListFields():
        if descriptor.message_type is not None:
            for child in (value if _is_repeated(descriptor) else (value,)):
                _strip_message(child)


def _const(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name)


def head_nodes(head: HeadArrays, source: str, output: str) -> tuple[list, list]:
    """Nodes and float64 initializers computing the decision value [N] (float64) from `source` [N, D]."""
    nodes = [helper.make_node("Cast", [source], ["head_x"], to=TensorProto.DOUBLE)]
    inits = []
    features = "head_x"
    if head.pca_components is not None:
        inits += [_const("head_pca_mean", head.pca_mean), _const("head_pca_proj", head.pca_components.T)]
        nodes += [helper.make_node("Sub", [features, "head_pca_mean"], ["head_centred"]),
                  helper.make_node("MatMul", ["head_centred", "head_pca_proj"], ["head_z"])]
        features = "head_z"
    if head.kind == "rbf":
        sv = head.support_vectors
        inits += [_const("head_sv_t", sv.T), _const("head_sv_sq", np.sum(sv * sv, axis=1)[None, :]),
                  _const("head_axis1", np.array([1], dtype=np.int64)),
                  _const("head_minus2", np.array(-2.0)), _const("head_zero", np.array(0.0)),
                  _const("head_neg_gamma", np.array(-head.gamma)),
                  _const("head_alpha", head.dual_coef[:, None]), _const("head_b", np.array(head.intercept))]
        nodes += [
            helper.make_node("ReduceSumSquare", [features, "head_axis1"], ["head_x_sq"], keepdims=1),
            helper.make_node("MatMul", [features, "head_sv_t"], ["head_dot"]),
            helper.make_node("Mul", ["head_dot", "head_minus2"], ["head_m2dot"]),
            helper.make_node("Add", ["head_x_sq", "head_m2dot"], ["head_d2a"]),
            helper.make_node("Add", ["head_d2a", "head_sv_sq"], ["head_d2b"]),
            helper.make_node("Max", ["head_d2b", "head_zero"], ["head_d2"]),
            helper.make_node("Mul", ["head_d2", "head_neg_gamma"], ["head_arg"]),
            helper.make_node("Exp", ["head_arg"], ["head_k"]),
            helper.make_node("MatMul", ["head_k", "head_alpha"], ["head_sum"]),
        ]
    else:
        inits += [_const("head_alpha", head.weights[:, None]), _const("head_b", np.array(head.intercept))]
        nodes.append(helper.make_node("MatMul", [features, "head_alpha"], ["head_sum"]))
    inits.append(_const("head_flat", np.array([-1], dtype=np.int64)))
    nodes += [helper.make_node("Add", ["head_sum", "head_b"], ["head_dec2d"]),
              helper.make_node("Reshape", ["head_dec2d", "head_flat"], [output])]
    for node in nodes:
        node.name = f"head/{node.output[0]}"  # named, so precision conversions can leave the head alone
    return nodes, inits


def is_head_node(node) -> bool:
    return node.name.startswith("head/")


def attach_head(model: onnx.ModelProto, head: HeadArrays) -> onnx.ModelProto:
    """Append the head to the embedder graph: outputs `decision` [N] and `embedding` [N, 2048]."""
    graph = model.graph
    nodes, inits = head_nodes(head, EMBEDDING_OUTPUT, DECISION_OUTPUT)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    decision = helper.make_tensor_value_info(DECISION_OUTPUT, TensorProto.DOUBLE, [None])
    decision.type.tensor_type.shape.dim[0].CopyFrom(batch_dim)
    outputs = [decision] + [o for o in graph.output if o.name == EMBEDDING_OUTPUT]
    del graph.output[:]
    graph.output.extend(outputs)
    return _finish(model)


def svm_head_graph(head: HeadArrays) -> onnx.ModelProto:
    """The patch head alone (float32 embeddings [N, 2048] -> decisions): what evaluation's cost line times."""
    nodes, inits = head_nodes(head, EMBEDDING_OUTPUT, DECISION_OUTPUT)
    dim = (head.pca_mean if head.pca_mean is not None else
           head.support_vectors[0] if head.kind == "rbf" else head.weights).shape[0]
    embedding = helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["n", int(dim)])
    graph = helper.make_graph(nodes, "head", [embedding],
                              [helper.make_tensor_value_info(DECISION_OUTPUT, TensorProto.DOUBLE, ["n"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=MAX_IR_VERSION)


def mil_head_graph(head: MilHead) -> onnx.ModelProto:
    """The MIL head alone (embeddings of one bag [N, 2048] -> decision [N], bag_score [1], attention [N])."""
    dummy = torch.zeros((3, head.state["mean"].shape[0]), dtype=torch.float32)
    bag = torch.export.Dim("bag", min=1, max=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(head.module(), (dummy,), dynamo=True, external_data=False,
                                    input_names=[EMBEDDING_OUTPUT],
                                    output_names=[DECISION_OUTPUT, BAG_SCORE_OUTPUT, ATTENTION_OUTPUT],
                                    dynamic_shapes={"x": {0: bag}}, verbose=False)
    return program.model_proto


def attach_mil_head(model: onnx.ModelProto, head: MilHead) -> onnx.ModelProto:
    """Embedder + MIL head in one graph: a bag of N patches in; decision (each patch's contribution to S),
    bag_score (S), attention and embedding out."""
    head_model = mil_head_graph(head)
    head_opset = {o.domain: o.version for o in head_model.opset_import}
    model = onnx.version_converter.convert_version(model, head_opset[""]) \
        if {o.domain: o.version for o in model.opset_import}.get("") != head_opset[""] else model
    model.ir_version = head_model.ir_version = min(model.ir_version, head_model.ir_version)
    outputs = [DECISION_OUTPUT, BAG_SCORE_OUTPUT, ATTENTION_OUTPUT, EMBEDDING_OUTPUT]
    merged = onnx.compose.merge_models(model, head_model, io_map=[(EMBEDDING_OUTPUT, EMBEDDING_OUTPUT)],
                                       prefix2="mil/", outputs=[f"mil/{o}" for o in outputs[:3]] + [outputs[3]])
    graph = merged.graph
    for output in graph.output:  # the contract's names, without the merge prefix
        if output.name.startswith("mil/"):
            _rename(graph, output.name, output.name.removeprefix("mil/"))
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    by_name = {o.name: o for o in graph.output}
    ordered = [copy.deepcopy(by_name[name]) for name in outputs]
    for output in ordered[:1] + ordered[2:3]:  # per-patch outputs share the input's batch dimension
        output.type.tensor_type.shape.dim[0].CopyFrom(batch_dim)
    del graph.output[:]
    graph.output.extend(ordered)
    return _finish(merged)


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for output in graph.output:
        if output.name == old:
            output.name = new


def _finish(model: onnx.ModelProto) -> onnx.ModelProto:
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    model.producer_name, model.producer_version = "netorigin", _package_version()
    model.graph.name = "netorigin"
    onnx.checker.check_model(model)
    return model


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netorigin")
    except PackageNotFoundError:
        return "0+unknown"
