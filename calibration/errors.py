"""Errors of the training side; they join the runtime's one hierarchy (`NetoriginError`), so the CLI and batch
mode report them the same way."""

from __future__ import annotations

from netorigin.runtime.errors import NetoriginError


class InputDataError(NetoriginError):
    """Training-side inputs (embeddings, sums tables, patch folders, heads, checkpoints) are malformed."""
