"""Accuracy-controlled INT8: quantise only the nodes that do not move S, found by measurement.

A fixed recipe (whole ResNet50 stages in float) either passed the fidelity check slowly or failed it fast. Here
every node the quantiser would compute in INT8 (convolutions, residual adds, pooling, the input scaling) is
costed alone: the model with only that node quantised, its error on the decisions of probe patches
of the fit patients, as the |dS| it would cause on a case of 100 patches. Nodes are then quantised cheapest first,
and the most of them are kept INT8 for which the model passes `validate` (the model's own fidelity check on the
calibration patients: no verdict flip at any band under its own bands, max |dS| within 1 % of the band); the
rest stay float32. Costing nodes alone, not by what keeping one in float saves inside an all-INT8 model, is the
measured choice: on the demo model the second ranking was not additive (keeping its top 16 in float moved S nine
times more than keeping none). Calibration ranges are computed once and reused for every candidate.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from netorigin.runtime.engines.session import CPU_BATCH, ModelSession, inference_session
from netorigin.runtime.model.record import FidelityRecord
from netorigin.runtime.progress import Bar

from .precision import Int8Recipe, quantised_nodes, to_int8

PROBE_PATCHES = 64
PATCHES_PER_CASE = 100  # the product's case: what a decision error is costed on


@dataclass(frozen=True)
class SearchPoint:
    """One candidate: how many of the ranked nodes were quantised (the rest float32), and its fidelity check."""

    quantised: int
    verdict_flips: int
    max_abs_delta_s_over_band_width: float | None
    passed: bool


@dataclass(frozen=True)
class Int8Search:
    """The chosen INT8 model, its recipe, the ranking that ordered the nodes, and every point tried. `passed` False:
    no point with any node quantised passed, and the model is the best of the curve (fewest flips, then least
    |dS|), recorded as failed."""

    model: onnx.ModelProto
    recipe: Int8Recipe
    kept: tuple[str, ...]  # the ranked nodes kept in float32 (the recipe's own float nodes aside)
    ranking: list[tuple[str, float]]  # (node, the |dS| per 100-patch case it causes quantised alone), cheapest first
    curve: list[SearchPoint]
    passed: bool

    def as_dict(self, modules: dict[str, str]) -> dict:
        """What the model and the training summary record (nodes named with their PyTorch module where known)."""
        def name(node: str) -> str:
            return f"{node} ({modules[node]})" if modules.get(node) else node

        return {"passed": self.passed, "kept_float": [name(n) for n in self.kept],
                "quantised": len(self.ranking) - len(self.kept),
                "ranking": [{"node": name(n), "cost_dS_per_case": round(c, 6)} for n, c in self.ranking],
                "curve": [p.__dict__ for p in sorted(self.curve, key=lambda p: p.quantised)]}


def cpu_session(model: onnx.ModelProto, what: str = "INT8 candidate") -> ModelSession:
    """The runtime's session for an in-memory graph (a candidate, not yet a model file) on the CPU provider."""
    return ModelSession(*inference_session(model.SerializeToString(), what, "cpu"), device="cpu")


def decisions(model: onnx.ModelProto, patches: np.ndarray) -> np.ndarray:
    """The model's per-patch decision values on ONNX Runtime's CPU provider, at the product's batch."""
    session = cpu_session(model)
    return np.concatenate([session.run(patches[i:i + CPU_BATCH])[0] for i in range(0, len(patches), CPU_BATCH)])


def _keeping(recipe: Int8Recipe, nodes: tuple[str, ...]) -> Int8Recipe:
    return replace(recipe, kept_nodes=recipe.kept_nodes + nodes)


def case_error(delta: np.ndarray, patches_per_case: int = PATCHES_PER_CASE) -> float:
    """The |dS| that per-patch decision errors `delta` cause on a case: its bias adds up over the case's patches,
    its spread grows with their square root."""
    return float(patches_per_case * abs(delta.mean()) + np.sqrt(patches_per_case) * delta.std())


def rank_nodes(fp32: onnx.ModelProto, calibration_patches: np.ndarray, recipe: Int8Recipe, probe: np.ndarray,
               ranges: Path, on_step: Bar = Bar()) -> list[tuple[str, float]]:
    """Each node the recipe quantises, by the |dS| per case it causes when it alone is quantised (cheapest first);
    one progress step per node."""
    reference = decisions(fp32, probe)
    candidates = quantised_nodes(to_int8(fp32, calibration_patches, recipe, on_batch=on_step, ranges=ranges), recipe)
    on_step.extend(len(candidates))
    ranking = []
    for name in candidates:
        alone = to_int8(fp32, calibration_patches, _keeping(recipe, tuple(n for n in candidates if n != name)),
                        ranges=ranges)
        ranking.append((name, case_error(decisions(alone, probe) - reference)))
        on_step()
    return sorted(ranking, key=lambda item: item[1])


def search_int8(fp32: onnx.ModelProto, calibration_patches: np.ndarray, recipe: Int8Recipe,
                validate: Callable[[onnx.ModelProto], FidelityRecord], on_step: Bar = Bar()) -> Int8Search:
    """The INT8 model with the most ranked nodes quantised (cheapest first) that passes `validate`: all of them
    first, then bisecting. Progress: one step per ranked node and per candidate checked."""
    probe = calibration_patches[:: max(1, len(calibration_patches) // PROBE_PATCHES)][:PROBE_PATCHES]
    with tempfile.TemporaryDirectory() as tmp:
        ranges = Path(tmp) / "ranges.json"
        ranking = rank_nodes(fp32, calibration_patches, recipe, probe, ranges, on_step)
        order = tuple(name for name, _ in ranking)
        tried: dict[int, tuple[onnx.ModelProto, FidelityRecord]] = {}

        def attempt(quantised: int) -> bool:
            model = to_int8(fp32, calibration_patches, _keeping(recipe, order[quantised:]), ranges=ranges)
            on_step.extend(1)
            tried[quantised] = (model, validate(model))
            on_step()
            return tried[quantised][1].passed

        passing, failing = 0, len(order)  # none quantised is the fp32 model: it passes without being tried
        if attempt(failing):
            passing = failing
        while failing - passing > 1:
            middle = (passing + failing) // 2
            if attempt(middle):
                passing = middle
            else:
                failing = middle

    def fidelity(quantised: int) -> tuple[int, float, int]:  # fewest flips, then least |dS|; ties: the faster
        check = tried[quantised][1]
        ratio = check.max_abs_delta_s_over_band_width
        return check.verdict_flips, np.inf if ratio is None else ratio, -quantised

    chosen = passing if passing > 0 else min(tried, key=fidelity)
    passed = tried[chosen][1].passed  # False unless a point with nodes quantised passed (or there were none)
    curve = [SearchPoint(q, c.verdict_flips, c.max_abs_delta_s_over_band_width, c.passed)
             for q, (_, c) in tried.items()]
    return Int8Search(tried[chosen][0], _keeping(recipe, order[chosen:]), order[chosen:], ranking, curve, passed)
