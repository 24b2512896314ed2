"""Occlusion maps, for review on the case page: which part of an image group carries the patient's class.

The seed shows saliency maps (the L1 norm over channels of the input gradient). ONNX Runtime runs the graph forward
only, so the runtime measures instead of differentiating: each cell of a grid laid over the 299 x 299 group is set
to 0 in every channel (no signal, as outside the body) and the group is run again; the cell's value is the drop in
the probability of the patient's class. Positive: the class rests on that cell. It costs grid x grid extra runs of
the model per group, so it is made only for the case page.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

OCCLUSION_GRID = 8
FILL = 0.0
METHOD = ("occlusion: each cell of a grid over the group set to 0 in every channel; value = the drop in the "
          "probability of the patient's class")


def cell_edges(size: int, grid: int) -> np.ndarray:
    """Pixel edges of `grid` near-equal cells along one side."""
    return np.linspace(0, size, grid + 1).round().astype(int)


def occluded_row(group: np.ndarray, row: int, grid: int) -> np.ndarray:
    """The group `grid` times, each copy with one cell of grid row `row` filled: [grid, channels, H, W]."""
    rows, cols = cell_edges(group.shape[1], grid), cell_edges(group.shape[2], grid)
    copies = np.repeat(group[None], grid, axis=0)
    for col in range(grid):
        copies[col, :, rows[row]:rows[row + 1], cols[col]:cols[col + 1]] = FILL
    return copies


def occlusion_maps(run: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray, probabilities: np.ndarray,
                   target: int, grid: int = OCCLUSION_GRID) -> np.ndarray:
    """[groups, grid, grid]: each cell's drop in the probability of class `target`, against `probabilities` (the
    groups' own, unoccluded). `run` maps images to probability vectors; a grid row goes to it at a time."""
    maps = np.empty((len(pixels), grid, grid), dtype=np.float32)
    for g, group in enumerate(pixels):
        for row in range(grid):
            maps[g, row] = probabilities[g, target] - run(occluded_row(group, row, grid))[:, target]
    return maps
