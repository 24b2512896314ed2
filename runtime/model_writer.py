"""The one writer of model files: every path that writes or rewrites a model (`train`, `export`, `calibrate`,
`sign`) ends here, so nothing reaches disk that the runtime would refuse, and a rewrite carries the record forward.
"""

from __future__ import annotations

from pathlib import Path

from .atomic import write_bytes_atomic
from .contract import MRI_FAMILY, ModelContract, contract_from_bytes, family, model_metadata
from .errors import ModelError
from .mri.contract import MriContract, mri_contract_from_bytes


def save_model(path: str | Path, model_bytes: bytes, previous: ModelContract | MriContract | None = None
               ) -> ModelContract | MriContract:
    """Validate `model_bytes` as the runtime will (schema, record, both digests; either model family) and write
    them atomically.

    `previous` is the model being rewritten (new bands, a signature): its record (embedder, head and demo flag; an
    MRI model's whole record) must be carried forward unchanged, and its graph, or nothing is written."""
    if family(model_metadata(model_bytes, path)) == MRI_FAMILY:
        contract = mri_contract_from_bytes(model_bytes, path)
        reason = None if previous is None or contract.record == previous.record else \
            "a rewrite may not change an MRI model's record"
    else:
        contract = contract_from_bytes(model_bytes, path)
        reason = None if previous is None else contract.record.carried_forward_from(previous.record)
    if reason is not None:
        raise ModelError(reason, previous.path)
    if previous is not None and contract.identity["graph_sha256"] != previous.identity["graph_sha256"]:
        raise ModelError("a rewrite may change metadata only, never the graph or weights", previous.path)
    write_bytes_atomic(path, model_bytes)
    return contract
