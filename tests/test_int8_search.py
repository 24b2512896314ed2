"""Accuracy-controlled INT8: convolutions ranked by the decision error they remove when kept in float32, and the
fewest top-ranked kept for which the model passes its check (here a check on the probe decisions themselves)."""

from __future__ import annotations

import numpy as np
import pytest

from netorigin.export.heads import head_arrays
from netorigin.export.int8_search import decisions, search_int8
from netorigin.export.onnx_graph import attach_head, export_embedder
from netorigin.export.precision import Int8Recipe, float_nodes
from netorigin.runtime.model.record import FidelityRecord, MeasuredOn

from .helpers import tiny_fitted

HERE = MeasuredOn("onnxruntime", "test", "CPUExecutionProvider", "test")


@pytest.fixture(scope="module")
def fp32_and_patches():
    embedder, _, patches, pipeline = tiny_fitted(64)
    return attach_head(export_embedder(embedder), head_arrays(pipeline)), patches


def error_check(fp32, patches, limit: float):
    """A check that passes when the candidate's max |decision error| on `patches` is within `limit`."""
    reference = decisions(fp32, patches)
    errors = []

    def validate(model) -> FidelityRecord:
        error = float(np.max(np.abs(decisions(model, patches) - reference)))
        errors.append(error)
        return FidelityRecord(0, error, len(patches), 1, 0, limit, error <= limit, HERE)

    return validate, errors


RECIPE = Int8Recipe(float_stem=False, search=True)  # every quantised node of the tiny trunk is a candidate


def test_a_model_that_passes_as_int8_keeps_nothing_in_float(fp32_and_patches):
    fp32, patches = fp32_and_patches
    validate, _ = error_check(fp32, patches, np.inf)
    found = search_int8(fp32, patches[::4], RECIPE, validate)
    ranked = len(found.ranking)
    assert found.passed and found.kept == () and [p.quantised for p in found.curve] == [ranked]
    assert {"Conv"} <= {node.op_type for node in fp32.graph.node if node.name in dict(found.ranking)}
    costs = [cost for _, cost in found.ranking]
    assert costs == sorted(costs)  # cheapest first


def test_the_most_of_the_cheapest_nodes_that_pass_are_quantised(fp32_and_patches):
    fp32, patches = fp32_and_patches
    probe, errors = error_check(fp32, patches, np.inf)
    everything = search_int8(fp32, patches[::4], RECIPE, probe)
    order = [name for name, _ in everything.ranking]
    cheapest_alone = search_int8(fp32, patches[::4], Int8Recipe(float_stem=False, kept_nodes=tuple(order[1:])),
                                 probe)
    low = cheapest_alone.curve[0].max_abs_delta_s_over_band_width
    high = everything.curve[0].max_abs_delta_s_over_band_width
    assert low < high
    validate, _ = error_check(fp32, patches, (low + high) / 2)
    found = search_int8(fp32, patches[::4], RECIPE, validate)
    tried = {p.quantised: p.passed for p in found.curve}
    chosen = len(order) - len(found.kept)
    assert found.passed and 1 <= chosen < len(order) and tried[chosen] and not tried[chosen + 1]
    assert found.kept == tuple(order[chosen:])  # the dearest stay float32


def test_when_nothing_passes_the_best_point_is_kept_and_marked_failed(fp32_and_patches):
    fp32, patches = fp32_and_patches
    validate, errors = error_check(fp32, patches, -1.0)
    found = search_int8(fp32, patches[::4], RECIPE, validate)
    assert not found.passed and 0 not in {p.quantised for p in found.curve}  # fp32 itself is never offered
    best = min(found.curve, key=lambda p: (p.max_abs_delta_s_over_band_width, -p.quantised))  # ties: faster
    assert len(found.ranking) - len(found.kept) == best.quantised


def test_only_nodes_really_computed_in_int8_are_ranked(fp32_and_patches):
    """A node the recipe keeps float32 (the stem) reads and writes quantised neighbours' tensors, yet is no
    candidate; every candidate changes the decisions when it alone is INT8."""
    fp32, patches = fp32_and_patches
    validate, _ = error_check(fp32, patches, np.inf)
    recipe = Int8Recipe(search=True)  # float stem
    found = search_int8(fp32, patches[::4], recipe, validate)
    assert found.ranking and not {name for name, _ in found.ranking} & set(float_nodes(fp32, recipe))
    assert all(cost > 0 for _, cost in found.ranking)


def nncf_cases(fp32, patches, patients: int = 4):
    """Patches split into `patients` cases, their fp32 sums on ONNX Runtime, and OpenVINO sums of a candidate."""
    from netorigin.calibration.bands_io import PatientSum
    from netorigin.runtime.engines.openvino_session import openvino_session
    from netorigin.runtime.slide.verdict import case_score

    cases = np.array_split(patches, patients)
    reference = [PatientSum(f"p{i}", i % 2, *case_score(decisions(fp32, c))) for i, c in enumerate(cases)]

    def score(model, indices):
        session = openvino_session(model.SerializeToString(), "candidate", "f32")
        return [PatientSum(f"p{i}", i % 2, *case_score(session.run(cases[i])[0])) for i in indices]

    return reference, score


def test_nncf_keeps_int8_where_the_check_allows_and_reverts_when_it_does_not(fp32_and_patches):
    """NNCF's accuracy control judged by the check on OpenVINO: a lenient check keeps every candidate in INT8; a
    check no INT8 node can meet makes NNCF revert nodes to float, and the result records the check it failed or
    passed; the stem and the head are never quantised; the result is an ONNX model ONNX Runtime runs."""
    from netorigin.export.nncf_int8 import nncf_int8
    from netorigin.export.precision import quantised_nodes

    fp32, patches = fp32_and_patches
    reference, score = nncf_cases(fp32, patches)
    checks = []

    def judge_within(limit):
        def judge(rows):
            ratio = max(abs(a.s - b.s) for a, b in zip(rows, reference)) / 100.0
            checks.append(ratio)
            return FidelityRecord(0, ratio, len(rows), 1, 0, limit, ratio <= limit, HERE)
        return judge

    lenient = nncf_int8(fp32, patches[::2], reference, 100.0, score, judge_within(np.inf), max_iterations=3)
    assert lenient.check.passed and len(lenient.int8_nodes) > 0
    stem = next(n.name for n in fp32.graph.node if n.op_type == "Conv")
    assert stem not in lenient.int8_nodes
    producer = {out: n.op_type for n in lenient.model.graph.node for out in n.output}
    head_inputs = [i for n in lenient.model.graph.node if n.name.startswith("head/") for i in n.input]
    assert head_inputs and not any(producer.get(i) == "DequantizeLinear" for i in head_inputs)
    assert decisions(lenient.model, patches[:4]).shape == (4,)
    strict = nncf_int8(fp32, patches[::2], reference, 1e-9, score, judge_within(0.0), max_iterations=3)
    assert len(strict.int8_nodes) < len(lenient.int8_nodes)  # NNCF put nodes back to float to approach the check
    assert strict.check.max_abs_delta_s_over_band_width == checks[-1] and strict.check.passed == (checks[-1] == 0)
    assert len(quantised_nodes(strict.model, Int8Recipe(float_stem=True))) == len(strict.int8_nodes)
