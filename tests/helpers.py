"""Helpers shared by the tests: synthetic embeddings, running the CLI in-process."""

from __future__ import annotations

import numpy as np


def tiny_fitted(n: int):
    """The tiny trunk (seed 1), `n` random uint8 patches whose darker half is class 0, and a reference head fitted
    on their embeddings: (embedder, info, patches, pipeline)."""
    import torch

    from netorigin.export.heads import fit_head
    from netorigin.export.smoke import tiny_embedder

    embedder, info = tiny_embedder(seed=1)
    patches = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    patches[n // 2:] //= 2
    with torch.inference_mode():
        emb = embedder(torch.from_numpy(patches)).numpy()
    return embedder, info, patches, fit_head("reference", emb, np.repeat([1, 0], n // 2))


def synthetic_embeddings(n_per_class: int = 300, dim: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative 'embeddings' whose classes differ on a subset of dimensions."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.5, 0.3, (2 * n_per_class, dim)).astype(np.float32)
    y = np.repeat([0, 1], n_per_class)
    x[y == 1, :200] += 0.08
    return x, y


def with_record(model_path, path, **changes):
    """A copy of the model at `path` whose record has `changes` (as `train` records its checks), written with both
    digests recomputed; returns its contract."""
    from dataclasses import replace

    from netorigin.runtime.model.contract import PREFIX, load_contract, with_metadata

    contract = load_contract(model_path)
    meta = dict(contract.meta) | {PREFIX + "record": replace(contract.record, **changes).to_json()}
    path.write_bytes(with_metadata(contract.model_bytes, meta))
    return load_contract(path)


def fidelity_record(passed: bool = True, flips: int = 0, ratio: float = 0.004, measured_on=None):
    """A fidelity check as `train` records it, measured on this host's ONNX Runtime CPU unless `measured_on`."""
    import onnxruntime

    from netorigin.runtime.model.record import FidelityRecord, MeasuredOn, cpu_features

    here = MeasuredOn("onnxruntime", onnxruntime.__version__, "CPUExecutionProvider", cpu_features())
    return FidelityRecord(verdict_flips=flips, max_abs_delta_s_over_band_width=ratio, patients=14, bands_checked=5,
                          edge_patients_skipped=0, threshold=0.01, passed=passed, measured_on=measured_on or here)


def rebanded(model, table, out, sums=(), **calibration):
    """The model with new bands, as `calibrate --model` writes them (`calibration` overrides the record's fields)."""
    from dataclasses import replace

    from netorigin.calibration.bands_io import calibration_record, write_bands_into_model

    record = calibration_record(table, list(sums), origin="test", decisions="test", checked_against_fit=True)
    return write_bands_into_model(model, table, replace(record, **calibration), out)


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


def run_cli_outside_a_test(*args: str) -> tuple[int, str, str]:
    """run_cli for module-scoped fixtures (no monkeypatch or capsys there): argv patched, output captured here."""
    import contextlib
    import io
    import sys

    from _pytest.monkeypatch import MonkeyPatch

    out, err = io.StringIO(), io.StringIO()
    with MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(sys, "argv", ["netorigin", *map(str, args)])
        from netorigin.runtime.cli import main

        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()
