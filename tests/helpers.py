"""Builders shared by the tests: small models, synthetic embeddings, slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netorigin.calibration.bands import calibrate_bands
from netorigin.export.build import build_model_bytes
from netorigin.export.embedder import EmbedderInfo, PatchEmbedder
from netorigin.export.heads import fit_head


def tiny_embedder(seed: int = 0) -> tuple[PatchEmbedder, EmbedderInfo]:
    """A very small conv trunk with the real embedder's wrapper: fast plumbing for runtime tests."""
    torch.manual_seed(seed)
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 8, stride=8), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 32, 4, stride=4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 2048),
                                torch.nn.ReLU())
    return PatchEmbedder(trunk).eval(), EmbedderInfo(name=f"tiny-test(seed={seed})", weights_sha256="0" * 64,
                                                      weights_path=None, seed=seed)


def synthetic_embeddings(n_per_class: int = 300, dim: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative 'embeddings' whose classes differ on a subset of dimensions."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.5, 0.3, (2 * n_per_class, dim)).astype(np.float32)
    y = np.repeat([0, 1], n_per_class)
    x[y == 1, :200] += 0.08
    return x, y


def head_dict(pipeline, patches_per_case: int = 100, embedder: EmbedderInfo | None = None) -> dict:
    info = {"patches_per_case": patches_per_case, "cohort": {"synthetic": True}}
    if embedder is not None:
        info["embedder"] = embedder.to_json()
    return {"pipeline": pipeline, "kind": "reference", "info": info}


def build_test_model(path: Path, embedder, info, *, patches_per_case: int = 100, with_bands: bool = True,
                     demo: bool = True, pipeline=None) -> Path:
    """Export a model whose head is fitted on embeddings of random uint8 patches (so decisions vary)."""
    if pipeline is None:
        rng = np.random.default_rng(1)
        patches = rng.integers(0, 256, (120, 224, 224, 3), dtype=np.uint8)
        patches[60:] //= 2  # darker half = class 0
        with torch.inference_mode():
            emb = embedder(torch.from_numpy(patches)).numpy()
        labels = np.repeat([1, 0], 60)
        pipeline = fit_head("reference", emb, labels)
    bands = None
    if with_bands:
        rng = np.random.default_rng(2)
        bands = calibrate_bands(rng.normal(0, 30, 20), rng.normal(0, 5, 8))
    model_bytes = build_model_bytes(embedder, info, head_dict(pipeline, patches_per_case, info), bands,
                                       demo=demo)
    path.write_bytes(model_bytes)
    return path


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
