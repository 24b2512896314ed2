"""The one writer of model files: every path that writes or rewrites a model (`train`, `export`, `calibrate`,
`sign`) ends here, so nothing reaches disk that the runtime would refuse, and a rewrite carries the record forward.
"""

from __future__ import annotations

from pathlib import Path

from .atomic import write_bytes_atomic
from .contract import ModelContract, contract_from_bytes
from .errors import ModelError


def save_model(path: str | Path, model_bytes: bytes, previous: ModelContract | None = None) -> ModelContract:
    """Validate `model_bytes` as the runtime will (schema, record, both digests) and write them atomically.

    `previous` is the model being rewritten (new bands, a signature): its embedder, head and demo flag must be
    carried forward unchanged, or nothing is written."""
    contract = contract_from_bytes(model_bytes, path)
    if previous is not None:
        reason = contract.record.carried_forward_from(previous.record)
        if reason is not None:
            raise ModelError(reason, previous.path)
        if contract.sha256 != previous.sha256:
            raise ModelError("a rewrite may change metadata only, never the graph or weights", previous.path)
    write_bytes_atomic(path, model_bytes)
    return contract
