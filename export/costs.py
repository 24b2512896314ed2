"""What a fitted head costs per case, as seed 001's Table 3 reports it: parameters, FLOPs and time per case.

Every head is measured the same way: its own ONNX graph (embeddings of one case in, S or decisions out) on ONNX
Runtime on this machine's CPU. The ResNet50 embedding of the patches is the same for every head and is not counted.
FLOPs are 2 x the multiply-adds of the graph's MatMul / Gemm nodes (everything else is elementwise and small).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference

from netorigin.runtime.model.contract import EMBEDDING_OUTPUT

from .heads import PatchSumScorer, head_arrays
from .mil import MilHead
from .onnx_graph import mil_head_graph, svm_head_graph


def head_graph(scorer: PatchSumScorer | MilHead) -> onnx.ModelProto:
    return mil_head_graph(scorer) if isinstance(scorer, MilHead) else svm_head_graph(head_arrays(scorer.pipeline))


def n_parameters(scorer: PatchSumScorer | MilHead, graph: onnx.ModelProto) -> int:
    """A MIL head's trainable weights (as seed 001 counts them); for a fitted SVM / linear head, the numbers its
    graph stores (PCA mean and components, support vectors, dual coefficients, gamma, intercept)."""
    if isinstance(scorer, MilHead):
        return scorer.n_parameters
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.graph.initializer))


def matmul_flops(graph: onnx.ModelProto, n_patches: int) -> int:
    """2 x multiply-adds of every MatMul / Gemm for a case of `n_patches` (shapes from ONNX shape inference)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(graph)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = n_patches
    inferred = shape_inference.infer_shapes(fixed, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    shapes |= {t.name: list(t.dims) for t in inferred.graph.initializer}
    total = 0
    for node in inferred.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        trans_a = node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute)
        trans_b = node.op_type == "Gemm" and any(at.name == "transB" and at.i for at in node.attribute)
        a2 = (a[::-1] if trans_a else a) if len(a) == 2 else ([1] + a if len(a) == 1 else a)
        b2 = (b[::-1] if trans_b else b) if len(b) == 2 else (b + [1] if len(b) == 1 else b)
        rows = int(np.prod(a2[:-1]))
        total += 2 * rows * a2[-1] * b2[-1]
    return total


def head_cost(scorer: PatchSumScorer | MilHead, n_patches: int = 100, repeats: int = 7, seed: int = 0) -> dict:
    """Parameters, FLOPs per case and time per case (median, min-max of `repeats` runs after two warm-ups)."""
    graph = head_graph(scorer)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    dim = graph.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    times = []
    for repeat in range(repeats + 2):
        case = np.abs(rng.normal(0.5, 0.5, (n_patches, dim))).astype(np.float32)  # a new case each run
        start = time.perf_counter()
        session.run(None, {EMBEDDING_OUTPUT: case})
        if repeat >= 2:
            times.append(time.perf_counter() - start)
    return {"parameters": n_parameters(scorer, graph), "flops_per_case": matmul_flops(graph, n_patches),
            "n_patches": n_patches, "time_per_case_ms": {"median": 1000 * statistics.median(times),
                                                         "min": 1000 * min(times), "max": 1000 * max(times),
                                                         "repeats": repeats},
            "measured": "head only, ONNX Runtime CPU; the ResNet50 embedding is the same for every head"}
