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


@pytest.fixture(scope="session")
def dicom_slides(slides, tmp_path_factory):
    """The 20x and 40x test slides as DICOM instance folders (wsidicomizer), a folder holding both, and the 20x
    slide with a short last frame."""
    import shutil

    from .dicom_slides import dicomize, shorten_last_frame

    root = tmp_path_factory.mktemp("dicom")
    out = {"svs20x": dicomize(slides["svs20x"].slide, root / "svs20x"),
           "svs40x": dicomize(slides["svs40x"].slide, root / "svs40x")}
    both = root / "both"
    both.mkdir()
    for name in ("svs20x", "svs40x"):
        for instance in out[name].iterdir():
            shutil.copy(instance, both / instance.name)
    out["both"] = both
    out["short"] = shorten_last_frame(out["svs20x"], root / "short")
    return out


@pytest.fixture(scope="session")
def pacs(tmp_path_factory):
    """A real PACS: Orthanc with its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb) on 127.0.0.1, a
    free port and a temporary storage folder; stopped afterwards. Yields its REST and DICOMweb roots."""
    from .pacs import start_orthanc

    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as roots:
        yield roots
