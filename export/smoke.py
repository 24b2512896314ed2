"""Small exported models for tests, soak runs and integrators' smoke checks: the real wrapper, contract, head
and bands around a tiny conv trunk, so a model builds in seconds. Never for diagnosis (marked demo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import PatientSum, calibration_record, table_from_sums, write_bands_into_model

from .build import build_model_bytes, write_model
from .embedder import EmbedderInfo, PatchEmbedder
from .heads import fit_head


def tiny_embedder(seed: int = 0) -> tuple[PatchEmbedder, EmbedderInfo]:
    """A very small conv trunk with the real embedder's wrapper (uint8 NHWC in, 2048-d out)."""
    torch.manual_seed(seed)
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 8, stride=8), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 32, 4, stride=4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 2048),
                                torch.nn.ReLU())
    return PatchEmbedder(trunk).eval(), EmbedderInfo(name=f"tiny-test(seed={seed})", weights_sha256="0" * 64,
                                                      weights_file=None, seed=seed)


def head_record(pipeline, patches_per_case: int = 100, embedder: EmbedderInfo | None = None) -> dict:
    """What `netorigin fit` saves, for a pipeline fitted in code."""
    info = {"patches_per_case": patches_per_case, "cohort": {"synthetic": True}}
    if embedder is not None:
        info["embedder"] = embedder.to_json()
    return {"pipeline": pipeline, "kind": "reference", "info": info}


def build_smoke_model(path: Path, embedder: PatchEmbedder, info: EmbedderInfo, *, patches_per_case: int = 100,
                      with_bands: bool = True, demo: bool = True, pipeline=None, precision: str = "fp32") -> Path:
    """Export a model whose head is fitted on embeddings of random uint8 patches (so decisions vary); an fp16 or
    INT8 `precision` gives the variant of the same head and bands (INT8 calibrated on a quarter of those patches)."""
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, (120, 224, 224, 3), dtype=np.uint8)
    patches[60:] //= 2  # darker half = class 0
    if pipeline is None:
        with torch.inference_mode():
            emb = embedder(torch.from_numpy(patches)).numpy()
        labels = np.repeat([1, 0], 60)
        pipeline = fit_head("reference", emb, labels)
    bands = sums = None
    if with_bands:
        rng = np.random.default_rng(2)
        sums = [PatientSum(f"p{i}", i % 2, float(s)) for i, s in enumerate(rng.normal(0, 30, 20))]
        sums += [PatientSum(f"o{i}", 2, float(s)) for i, s in enumerate(rng.normal(0, 5, 8))]
        bands = calibrate_bands(*table_from_sums(sums))
    int8 = precision == "int8"
    write_model(path, build_model_bytes(embedder, info, head_record(pipeline, patches_per_case, info), None,
                                        demo=demo, precision=precision,
                                        calibration_patches=patches[::4] if int8 else None,
                                        calibration_set={"patches": 30, "seed": 1} if int8 else None))
    if bands is not None:  # the calibration sums, as `train` stores them
        write_bands_into_model(path, bands, calibration_record(bands, sums, origin="smoke model (synthetic sums)",
                                                                decisions="synthetic", checked_against_fit=True))
    return path
