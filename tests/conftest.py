from __future__ import annotations

import numpy as np
import pytest

from netorigin.export.smoke import build_smoke_model, tiny_embedder
from netorigin.export.synthetic import make_slide, patient_texture


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small exported netorigin model (tiny trunk, PCA + RBF SVM, bands), 20 patches per case."""
    embedder, info = tiny_embedder()
    return build_smoke_model(tmp_path_factory.mktemp("model") / "tiny.onnx", embedder, info, patches_per_case=20)


@pytest.fixture(scope="session")
def slides(tmp_path_factory):
    """Synthetic slides: SVS at 0.5 and 0.25 um/px, and a generic pyramidal TIFF."""
    root = tmp_path_factory.mktemp("slides")
    rng = np.random.default_rng(0)
    out = {}
    for name, mpp, svs in (("svs20x", 0.5, True), ("svs40x", 0.25, True), ("tiff20x", 0.5, False)):
        texture = patient_texture("pancreas", rng)
        out[name] = make_slide(root / f"{name}.{'svs' if svs else 'tif'}", "pancreas", texture, rng, mpp=mpp,
                               size_um=(2000, 1800), svs=svs)
    return out
