"""Training patches for embedding: a folder of patch images + CSV, or slides + annotations sampled through the
runtime's own sampler (so training patches are drawn exactly as the runtime draws them)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.errors import InputDataError
from netorigin.calibration.labels import label_code
from netorigin.runtime.manifest import read_csv_rows
from netorigin.runtime.regions import RegionRules, load_annotations
from netorigin.runtime.sampling import PatchGeometry, allot_case, sample_slide
from netorigin.runtime.slide import Slide

from .embedder import EmbedderInfo


def is_patch_manifest(manifest: Path) -> bool:
    """Patch-folder manifests have a `path` column; slide manifests have `slide` and `annotations`."""
    return "path" in read_csv_rows(manifest, ())[0]


def load_patch_folder(manifest: Path, pixels: int = 224) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Patch images listed in a CSV (patient, label, specimen, slide, path) -> uint8 [N, P, P, 3] + columns."""
    rows = read_csv_rows(manifest, ("patient", "label", "specimen", "slide", "path"))
    images = np.empty((len(rows), pixels, pixels, 3), dtype=np.uint8)
    for i, row in enumerate(rows):
        path = manifest.parent / row["path"]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (pixels, pixels):
                    img = img.resize((pixels, pixels), Image.BILINEAR)
                images[i] = np.asarray(img)
        except FileNotFoundError:
            raise InputDataError("patch image not found", path) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputDataError(f"patch image cannot be decoded ({exc})", path) from None
    columns = {
        "patients": np.array([r["patient"] for r in rows]),
        "labels": np.array([label_code(r["label"], str(manifest)) for r in rows], dtype=np.int64),
        "specimens": np.array([r["specimen"] for r in rows]),
        "slides": np.array([r["slide"] for r in rows]),
        "patch_ids": np.array([Path(r["path"]).name for r in rows]),
    }
    return images, columns


SLIDE_COLUMNS = ("case", "label", "specimen", "slide", "annotations")


def sample_slide_cohort(manifest: Path, patches_per_case: int, seed: int, geometry: PatchGeometry = PatchGeometry(),
                        rules: RegionRules = RegionRules(), read_workers: int = 4,
                        on_case: Callable[[str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    """Sample every case of a slide manifest as the runtime does; `on_case(case, patches)` gets each case."""
    rows = read_csv_rows(manifest, SLIDE_COLUMNS)
    cases: dict[str, list[dict]] = {}
    for row in rows:
        cases.setdefault(row["case"], []).append(row)
    columns: dict[str, list] = {k: [] for k in ("patients", "labels", "specimens", "slides", "patch_ids")}
    with ThreadPoolExecutor(read_workers) as readers:
        for case, case_rows in cases.items():
            label = label_code(case_rows[0]["label"], str(manifest))
            counts = allot_case(patches_per_case, [r["specimen"] for r in case_rows])
            case_patches = []
            for index, (row, n) in enumerate(zip(case_rows, counts)):
                slide_path = manifest.parent / row["slide"]
                with Slide(slide_path) as slide:
                    regions = load_annotations(manifest.parent / row["annotations"], slide, rules)
                    for k, patch in enumerate(sample_slide(slide, regions, n, geometry, seed, index, readers)):
                        case_patches.append(patch.pixels)
                        columns["patients"].append(case)
                        columns["labels"].append(label)
                        columns["specimens"].append(row["specimen"])
                        columns["slides"].append(row["slide"])
                        columns["patch_ids"].append(f"{row['slide']}@{patch.x},{patch.y}#{k}")
            if on_case is not None:
                on_case(case, np.stack(case_patches))
    return {k: np.array(v) for k, v in columns.items()}


def calibration_patches(manifest: Path, count: int, seed: int) -> tuple[np.ndarray, dict]:
    """A seeded subset of training patches (patch folder or slides) for INT8 calibration, and its description."""
    if is_patch_manifest(manifest):
        images, _ = load_patch_folder(manifest)
    else:
        cases = {row["case"] for row in read_csv_rows(manifest, SLIDE_COLUMNS)}
        chunks: list[np.ndarray] = []
        sample_slide_cohort(manifest, -(-count // len(cases)), seed, on_case=lambda _, p: chunks.append(p))
        images = np.concatenate(chunks)
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:count])
    description = {"manifest": str(manifest), "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
                   "patches": int(len(pick)), "seed": seed,
                   "method": "onnxruntime.quantization static QDQ, MinMax, per-channel S8 weights, U8 activations"}
    return images[pick], description


def embed_manifest(manifest: Path, embed: Callable[[np.ndarray], np.ndarray], info: EmbedderInfo, *,
                   patches_per_case: int, seed: int,
                   progress: Callable[[str], None] | None = None) -> Embeddings:
    """Embed a patch-folder manifest (column `path`) or a slide manifest (columns `slide`, `annotations`)."""
    if is_patch_manifest(manifest):
        images, columns = load_patch_folder(manifest)
        vectors = embed(images)
        source = "patch-folder"
    else:
        chunks = []

        def on_case(case: str, patches: np.ndarray) -> None:
            chunks.append(embed(patches))
            if progress is not None:
                progress(f"  embedded {case}: {len(patches)} patches")

        columns = sample_slide_cohort(manifest, patches_per_case, seed, on_case=on_case)
        vectors = np.concatenate(chunks)
        source = "slides"
    info_doc = {"embedder": info.to_json(), "source": source, "manifest": str(manifest), "seed": seed,
                "patches_per_case": patches_per_case}
    return Embeddings(embeddings=vectors, info=info_doc, **columns)
