"""The seam between the model families: a slide model takes a bag of patches from slides (runtime/slide), an MRI
lesion model takes image groups from MRI series (runtime/mri). Here, and only here, a model file is told apart by its
family, read as its family's contract, and written: every path that writes or rewrites a model (`train`, `export`,
`calibrate`, `sign`, `train-mri`) ends in `save_model`, so nothing reaches disk that the runtime would refuse, and a
rewrite carries the record forward.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from .atomic import write_bytes_atomic
from .errors import ModelError
from .model.contract import (
    MRI_FAMILY,
    ModelContract,
    contract_from_bytes,
    decode_metadata,
    family,
    model_metadata,
    read_model_file,
)
from .model.protobuf_fields import WireFormatError, read_metadata
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


def is_mri_model(path: str | Path) -> bool:
    """Whether a model file declares the MRI family; nothing verified. The file is memory-mapped, so only its
    top-level field headers and metadata are read, not its weights (the engine reads those once, after). A file
    that cannot be mapped is read whole, to fail with the loaders' own one-line error."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            props = read_metadata(mapped)
    except (OSError, ValueError, BufferError, WireFormatError):  # missing, empty, truncated: say it as loaders do
        return family(model_metadata(read_model_file(path), path)) == MRI_FAMILY
    return family(decode_metadata(props, path)) == MRI_FAMILY


def load_any_contract(path: str | Path) -> ModelContract | MriContract:
    """A verified model of either family (what `sign` and `inspect` take)."""
    path = Path(path)
    model_bytes = read_model_file(path)
    if family(model_metadata(model_bytes, path)) == MRI_FAMILY:
        return mri_contract_from_bytes(model_bytes, path)
    return contract_from_bytes(model_bytes, path)
