"""A bag head's outputs for one case, as both engines (ONNX Runtime, OpenVINO) return them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import ATTENTION_OUTPUT, BAG_SCORE_OUTPUT, DECISION_OUTPUT


@dataclass(frozen=True)
class BagOutput:
    """What a bag head gives for one case: each patch's contribution, the bag score S and each patch's attention."""

    decisions: np.ndarray
    score: float
    attention: np.ndarray
    embeddings: np.ndarray | None = None


BAG_OUTPUTS = [DECISION_OUTPUT, BAG_SCORE_OUTPUT, ATTENTION_OUTPUT]


def bag_output(values: list, with_embeddings: bool) -> BagOutput:
    """BagOutput from the engine's outputs in BAG_OUTPUTS order (+ embeddings)."""
    return BagOutput(np.asarray(values[0], dtype=np.float64), float(np.asarray(values[1]).reshape(-1)[0]),
                     np.asarray(values[2], dtype=np.float64), values[3] if with_embeddings else None)
