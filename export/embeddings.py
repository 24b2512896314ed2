"""Training patches for embedding: a folder of patch images + CSV, or slides + annotations sampled through the
runtime's own sampler (so training patches are drawn exactly as the runtime draws them)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.errors import InputDataError
from netorigin.calibration.labels import label_code
from netorigin.runtime.batch.cluster import DaskMapper, worker_cached
from netorigin.runtime.batch.manifest import read_csv_rows
from netorigin.runtime.slide.regions import RegionRules, load_annotations
from netorigin.runtime.slide.sampling import PatchGeometry, allot_case, plan_reads, sample_slide
from netorigin.runtime.slide.slide import MppRule, Slide, row_mpp_rule

from .embedder import EmbedderInfo, build_embedder
from .engines import make_engine


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


@dataclass(frozen=True)
class CasePatches:
    """One patient's training patches (uint8 [N, P, P, 3]) in sampling order, with their row columns."""

    patient: str
    label: int
    pixels: np.ndarray
    specimens: list[str]
    slides: list[str]
    patch_ids: list[str]


def _slide_cases(manifest: Path, patches_per_case: int, seed: int, geometry: PatchGeometry, rules: RegionRules,
                 mpp: MppRule, read_workers: int, wanted: set[str] | None) -> Iterator[CasePatches]:
    rows = read_csv_rows(manifest, SLIDE_COLUMNS)
    rules_by_row = [row_mpp_rule(row, mpp, line, manifest) for line, row in enumerate(rows, start=2)]
    cases: dict[str, list[dict]] = {}
    for row, rule in zip(rows, rules_by_row):
        cases.setdefault(row["case"], []).append(row | {"mpp_rule": rule})
    with ThreadPoolExecutor(read_workers) as readers:
        for case, case_rows in cases.items():
            if wanted is not None and case not in wanted:
                continue
            label = label_code(case_rows[0]["label"], str(manifest))
            counts = allot_case(patches_per_case, [r["specimen"] for r in case_rows])
            pixels, specimens, slides, ids = [], [], [], []
            for index, (row, n) in enumerate(zip(case_rows, counts)):
                with Slide(manifest.parent / row["slide"], row["mpp_rule"]) as slide:
                    plan = plan_reads(slide, geometry)  # the runtime's resolution checks, before any read
                    regions = load_annotations(manifest.parent / row["annotations"], slide, rules)
                    for k, patch in enumerate(sample_slide(slide, regions, n, geometry, seed, index, readers, plan)):
                        pixels.append(patch.pixels)
                        specimens.append(row["specimen"])
                        slides.append(row["slide"])
                        ids.append(f"{row['slide']}@{patch.x},{patch.y}#{k}")
            yield CasePatches(case, label, np.stack(pixels), specimens, slides, ids)


def _folder_cases(manifest: Path, wanted: set[str] | None) -> Iterator[CasePatches]:
    images, columns = load_patch_folder(manifest)
    for patient in dict.fromkeys(columns["patients"].tolist()):
        if wanted is not None and patient not in wanted:
            continue
        mask = columns["patients"] == patient
        yield CasePatches(patient, int(columns["labels"][mask][0]), images[mask], columns["specimens"][mask].tolist(),
                          columns["slides"][mask].tolist(), columns["patch_ids"][mask].tolist())


def iter_cohort(manifest: Path, patches_per_case: int, seed: int, *, geometry: PatchGeometry = PatchGeometry(),
                rules: RegionRules = RegionRules(), mpp: MppRule = MppRule(), read_workers: int = 4,
                patients: set[str] | None = None) -> Iterator[CasePatches]:
    """Each patient's patches, one at a time: slides are sampled exactly as the runtime samples (so the same
    seed gives the same patches on every pass), patch folders are read as listed. `patients` restricts."""
    if is_patch_manifest(manifest):
        yield from _folder_cases(manifest, patients)
    else:
        yield from _slide_cases(manifest, patches_per_case, seed, geometry, rules, mpp, read_workers, patients)


def calibration_patches(manifest: Path, count: int, seed: int, patients: set[str] | None = None, *,
                        rules: RegionRules = RegionRules(), mpp: MppRule = MppRule(),
                        on_patient: Callable[[], None] = lambda: None) -> tuple[np.ndarray, dict]:
    """A seeded subset of training patches (patch folder or slides, sampled with the same region and MPP rules
    as the embeddings) for INT8 calibration, and its description; `on_patient` is called per patient read."""
    rows = read_csv_rows(manifest, ())
    key = "patient" if is_patch_manifest(manifest) else "case"
    n_cases = len(patients) if patients is not None else len({row[key] for row in rows})
    read = []
    for case in iter_cohort(manifest, -(-count // n_cases), seed, rules=rules, mpp=mpp, patients=patients):
        read.append(case.pixels)
        on_patient()
    images = np.concatenate(read)
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:count])
    description = {"manifest": str(manifest), "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
                   "patches": int(len(pick)), "seed": seed, "patients": n_cases,
                   "method": "onnxruntime.quantization static QDQ, MinMax, per-channel S8 weights, U8 activations"}
    return images[pick], description


def check_slides(manifest: Path, geometry: PatchGeometry, mpp: MppRule = MppRule(),
                 rules: RegionRules = RegionRules()) -> None:
    """Every slide of a slide manifest opens, can give the model's field of view (the runtime's resolution
    checks) and has a usable tumour region, before any pixel is read or any output written: a bad slide among
    the last patients must not surface after hours of embedding. Patch manifests have nothing to check."""
    if is_patch_manifest(manifest):
        return
    for line, row in enumerate(read_csv_rows(manifest, SLIDE_COLUMNS), start=2):
        with Slide(manifest.parent / row["slide"], row_mpp_rule(row, mpp, line, manifest)) as slide:
            plan_reads(slide, geometry)
            load_annotations(manifest.parent / row["annotations"], slide, rules)


@dataclass(frozen=True)
class EmbedderSpec:
    """How to build an embedding engine, as plain values: what each cluster worker builds (once) for itself."""

    kind: str
    weights: str | None = None
    seed: int = 0
    engine: str = "torch"
    batch_size: int = 32
    threads: int | None = None  # PyTorch threads; embeddings are bit-identical only at equal thread counts

    def build(self) -> tuple[Callable[[np.ndarray], np.ndarray], EmbedderInfo]:
        if self.threads:
            torch.set_num_threads(self.threads)
        embedder, info = build_embedder(self.kind, self.weights, self.seed)
        return make_engine(embedder, self.engine, self.batch_size), info


def cohort_patients(manifest: Path) -> list[str]:
    """The cohort's patients in manifest order (the order embeddings are written in)."""
    rows = read_csv_rows(manifest, ())
    return list(dict.fromkeys(row["patient" if is_patch_manifest(manifest) else "case"] for row in rows))


def embed_patient_on_worker(patient: str, manifest: Path, spec: EmbedderSpec, weights_sha256: str,
                            patches_per_case: int, seed: int, rules: RegionRules,
                            mpp: MppRule) -> tuple[CasePatches, np.ndarray]:
    """One patient as a cluster task: the worker builds the engine once (for these weights), samples and embeds
    exactly as a local run does; returns the case without its pixels, and its embeddings. Weights that differ
    from the driver's (another file at the same path) are refused."""
    engine, info = worker_cached(("embedder", spec, weights_sha256), spec.build)
    if info.weights_sha256 != weights_sha256:
        raise InputDataError(f"the weights on this worker are not the driver's (sha256 {info.weights_sha256[:12]}… "
                             f"vs {weights_sha256[:12]}…)", spec.weights)
    (case,) = iter_cohort(manifest, patches_per_case, seed, rules=rules, mpp=mpp, patients={patient})
    return replace(case, pixels=np.empty((len(case.pixels), 0), np.uint8)), engine(case.pixels)


def embed_manifest_on(mapper: DaskMapper, manifest: Path, spec: EmbedderSpec, info: EmbedderInfo, *,
                      patches_per_case: int, seed: int, rules: RegionRules = RegionRules(),
                      mpp: MppRule = MppRule(), progress: Callable[[str], None] | None = None) -> Embeddings:
    """`embed_manifest` with one task per patient on a Dask cluster; the same file as a local run."""
    check_slides(manifest, PatchGeometry(), mpp, rules)
    manifest = manifest.resolve()  # workers may run in other folders
    if spec.weights:
        spec = replace(spec, weights=str(Path(spec.weights).resolve()))
    results = mapper(embed_patient_on_worker, cohort_patients(manifest),
                     on_done=None if progress is None else lambda r: progress(f"  embedded {r[0].patient}"),
                     manifest=manifest, spec=spec, weights_sha256=info.weights_sha256,
                     patches_per_case=patches_per_case, seed=seed, rules=rules, mpp=mpp)
    return _embeddings(manifest, [(case, vectors) for case, vectors in results], info, seed, patches_per_case)


def embed_manifest(manifest: Path, embed: Callable[[np.ndarray], np.ndarray], info: EmbedderInfo, *,
                   patches_per_case: int, seed: int, rules: RegionRules = RegionRules(), mpp: MppRule = MppRule(),
                   patients: set[str] | None = None, progress: Callable[[str], None] | None = None) -> Embeddings:
    """Embed a patch-folder manifest (column `path`) or a slide manifest (columns `slide`, `annotations`)."""
    if patients is None:  # a whole cohort: check every slide first (train checks before calling with patients)
        check_slides(manifest, PatchGeometry(), mpp, rules)
    embedded = []
    for case in iter_cohort(manifest, patches_per_case, seed, rules=rules, mpp=mpp, patients=patients):
        embedded.append((case, embed(case.pixels)))
        if progress is not None:
            progress(f"  embedded {case.patient}: {len(case.pixels)} patches")
    return _embeddings(manifest, embedded, info, seed, patches_per_case)


def _embeddings(manifest: Path, embedded: list[tuple[CasePatches, np.ndarray]], info: EmbedderInfo, seed: int,
                patches_per_case: int) -> Embeddings:
    """Per-patient embeddings, in order, as one embeddings file."""
    vectors, owners, labels, specimens, slides, ids = [], [], [], [], [], []
    for case, case_vectors in embedded:
        vectors.append(case_vectors)
        owners += [case.patient] * len(case_vectors)
        labels += [case.label] * len(case_vectors)
        specimens += case.specimens
        slides += case.slides
        ids += case.patch_ids
    if not vectors:
        raise InputDataError("manifest lists no patients", manifest)
    info_doc = {"embedder": info.to_json(), "source": "patch-folder" if is_patch_manifest(manifest) else "slides",
                "manifest": str(manifest), "seed": seed, "patches_per_case": patches_per_case}
    return Embeddings(embeddings=np.concatenate(vectors), patients=np.array(owners),
                      labels=np.array(labels, dtype=np.int64), specimens=np.array(specimens),
                      slides=np.array(slides), patch_ids=np.array(ids), info=info_doc)
