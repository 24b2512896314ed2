"""A model's outputs for one case, as both engines (ONNX Runtime, OpenVINO) and the predictor hand them on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.contract import ATTENTION_OUTPUT, BAG_SCORE_OUTPUT, DECISION_OUTPUT, EMBEDDING_OUTPUT


@dataclass(frozen=True)
class CaseOutput:
    """Per-patch decisions; a bag head's are contributions to its bag score S, and it adds S and each patch's
    attention (None for a patch-sum head, whose S the verdict sums from the decisions)."""

    decisions: np.ndarray
    score: float | None
    attention: np.ndarray | None
    embeddings: np.ndarray | None = None


def bag_output_names(with_embeddings: bool) -> list[str]:
    """What a bag run asks the engine for, in bag_output's order."""
    return [DECISION_OUTPUT, BAG_SCORE_OUTPUT, ATTENTION_OUTPUT] + ([EMBEDDING_OUTPUT] if with_embeddings else [])


def bag_output(values: list) -> CaseOutput:
    """A bag head's CaseOutput from the engine's outputs in bag_output_names order."""
    return CaseOutput(np.asarray(values[0], dtype=np.float64), float(np.asarray(values[1]).reshape(-1)[0]),
                      np.asarray(values[2], dtype=np.float64), values[3] if len(values) > 3 else None)
