"""A model's outputs for one case, as both engines (ONNX Runtime, OpenVINO) and the predictor hand them on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import ATTENTION_OUTPUT, BAG_SCORE_OUTPUT, DECISION_OUTPUT


@dataclass(frozen=True)
class CaseOutput:
    """Per-patch decisions and S; a bag head's decisions are contributions to its bag score, and it adds each
    patch's attention (None for a patch-sum head)."""

    decisions: np.ndarray
    score: float
    attention: np.ndarray | None
    embeddings: np.ndarray | None = None


BAG_OUTPUTS = [DECISION_OUTPUT, BAG_SCORE_OUTPUT, ATTENTION_OUTPUT]


def bag_output(values: list, with_embeddings: bool) -> CaseOutput:
    """A bag head's CaseOutput from the engine's outputs in BAG_OUTPUTS order (+ embeddings)."""
    return CaseOutput(np.asarray(values[0], dtype=np.float64), float(np.asarray(values[1]).reshape(-1)[0]),
                     np.asarray(values[2], dtype=np.float64), values[3] if with_embeddings else None)
