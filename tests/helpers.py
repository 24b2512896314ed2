"""Helpers shared by the tests: synthetic embeddings, running the CLI in-process."""

from __future__ import annotations

import numpy as np


def synthetic_embeddings(n_per_class: int = 300, dim: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative 'embeddings' whose classes differ on a subset of dimensions."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.5, 0.3, (2 * n_per_class, dim)).astype(np.float32)
    y = np.repeat([0, 1], n_per_class)
    x[y == 1, :200] += 0.08
    return x, y


def with_calibration_record(model_path, path, **record):
    """A copy of the model at `path` with `record` merged into its provenance's calibration (as `train` records its
    checks there); returns its contract."""
    from netorigin.runtime.contract import load_contract, with_metadata

    contract = load_contract(model_path)
    meta = dict(contract.meta)
    provenance = dict(meta["netorigin.provenance"])
    provenance["calibration"] = dict(provenance["calibration"] or {}) | record
    meta["netorigin.provenance"] = provenance
    path.write_bytes(with_metadata(contract.model_bytes, meta))
    return load_contract(path)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `netorigin ARGS` in-process exactly as the console script does: (exit code, stdout, stderr)."""
    import sys

    import pytest

    from netorigin.runtime.cli import main

    monkeypatch.setattr(sys, "argv", ["netorigin", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err
