"""The Python API for scanner software: `Predictor(model).predict_case(slides, annotations)`."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..dicom.dicomweb import is_series_url
from ..engines.outputs import CaseOutput
from ..engines.session import (
    AUTO,
    CPU,
    CUDA,
    ONNXRUNTIME,
    choose_engine,
    lower_fidelity_notes,
    onnxruntime,
    open_engine,
    resolve_ov_precision,
)
from ..errors import AnnotationError, ConfigurationError, InferenceError, InsufficientTissueError
from ..model.bands import Band
from ..model.contract import DEMO_WARNING, ModelContract, load_contract
from ..model.signing import PublicKey, load_public_key, trusted_keys_from_env, verify_signature
from ..names import case_id_from_path, check_case_id
from .regions import RegionRules, Regions, detect_tissue, load_annotations
from .sampling import Patch, PatchGeometry, ReadPlan, allot_case, plan_reads, sample_case
from .slide import MppRule, Slide, as_mpp_rule
from .verdict import PatientVerdict, case_verdict

# A slide is the same file content, not the same path: what must match for a report to stand for a run.
SLIDE_IDENTITY = ("quickhash", "bytes", "dimensions", "mpp", "mpp_source")
IN_SAMPLE_NOTE = ("RESEARCH ONLY: this model's bands were calibrated on patients that also fitted its head "
                  "(in-sample, too narrow)")


@dataclass(frozen=True)
class SlideInput:
    """One slide of a case, its optional QuPath annotations and the specimen it belongs to."""

    path: Path | str  # a file, a DICOM folder, or a DICOMweb series URL (kept as text)
    annotations: Path | None = None
    specimen: str = "A"
    mpp: MppRule | float | None = MppRule()  # a number is a fallback MPP (for slides that record none)

    def __post_init__(self) -> None:
        if not is_series_url(self.path):
            object.__setattr__(self, "path", Path(self.path))
        if self.annotations is not None:
            object.__setattr__(self, "annotations", Path(self.annotations))
        object.__setattr__(self, "mpp", as_mpp_rule(self.mpp))


@dataclass
class SlideSummary:
    fingerprint: dict
    regions: str
    region_area_mm2: float
    level: int
    downsample: float
    read_size: int
    field_of_view_um: float
    patches: int
    notes: list[str]


@dataclass
class CaseResult:
    """Everything a report needs; `verdict` is one of pancreas / small_intestine / uncertain."""

    case_id: str
    verdict: PatientVerdict
    band: Band | None
    decisions: np.ndarray
    patches: list[dict]
    slides: list[SlideSummary]
    seed: int
    provider: str
    timings: dict[str, float]
    model: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warning: str | None = None
    engine: dict[str, str] = field(default_factory=dict)  # asked for, ran, and why (`auto` chooses)
    region_rules: dict[str, list[str]] = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)  # each slide's input identity (input_identity)
    level: int | None = None  # a pyramid level forced for benchmarks (None: the level rule chose)
    # For the case page, not the JSON record: each slide's sampled region, the calibration patients' sums.
    regions: list[Any] = field(default_factory=list)
    calibration_sums: list[dict] = field(default_factory=list)


def annotation_sha256(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        raise AnnotationError("annotation file not found", path) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read annotation file ({exc.strerror})", path) from None


def input_identity(item: SlideInput, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """What a report's inputs are, by content: the slide (its fingerprint's quickhash, size, dimensions, MPP and
    where the MPP came from), its annotation file's digest (None: tissue detection) and its specimen. Batch resume
    compares this; `verify` finds the files again by it."""
    annotations = None if item.annotations is None else {"name": item.annotations.name,
                                                         "sha256": annotation_sha256(item.annotations)}
    return {"slide": fingerprint["name"], **{k: fingerprint[k] for k in SLIDE_IDENTITY},
            "annotations": annotations, "specimen": item.specimen}


def case_inputs(items: Sequence[SlideInput]) -> list[dict[str, Any]]:
    """Every slide's input identity, opening each slide briefly."""
    identities = []
    for item in items:
        with Slide(item.path, item.mpp) as slide:
            identities.append(input_identity(item, slide.fingerprint()))
    return identities


def as_inputs(slides: Sequence, annotations: Sequence | None, specimens: Sequence[str] | None,
               mpp: MppRule | float | None) -> list[SlideInput]:
    items = []
    annotations = list(annotations or [])
    if annotations and len(annotations) != len(slides):
        raise ConfigurationError(f"{len(annotations)} annotation files for {len(slides)} slides: give one per "
                                 "slide, in the same order, or none")
    if specimens and len(specimens) != len(slides):
        raise ConfigurationError(f"{len(specimens)} specimen ids for {len(slides)} slides: give one per slide")
    for i, item in enumerate(slides):
        if isinstance(item, SlideInput):
            items.append(item)
            continue
        items.append(SlideInput(path=item, annotations=Path(annotations[i]) if annotations else None,
                                specimen=specimens[i] if specimens else "A", mpp=mpp))
    if not items:
        raise ConfigurationError("a case needs at least one slide")
    return items


@dataclass(frozen=True)
class PredictorSettings:
    """Everything a Predictor is built from, as plain values: what a cluster worker needs to build the same one."""

    model: str
    device: str = "auto"
    confidence: float | str | None = None
    seed: int = 0
    read_workers: int = 4
    threads: int | None = None
    rules: RegionRules = RegionRules()
    trusted_keys: tuple[PublicKey, ...] | None = None  # the keys' bytes: a worker trusts what the driver trusted
    engine: str = AUTO
    ov_precision: str = "auto"
    allow_lower_fidelity: bool = False

    def build(self, inference: bool = True) -> Predictor:
        return Predictor(self.model, device=self.device, confidence=self.confidence, seed=self.seed,
                         read_workers=self.read_workers, threads=self.threads, rules=self.rules,
                         trusted_keys=self.trusted_keys, engine=self.engine, ov_precision=self.ov_precision,
                         allow_lower_fidelity=self.allow_lower_fidelity, inference=inference)


class Predictor:
    """Loads and verifies a model once, then predicts cases; thread-compatible, one case at a time.

    `engine` is ONNX Runtime (CPU or CUDA, `device`) or OpenVINO (CPU; `ov_precision` auto = bf16 where the CPU
    has it and this model's check vouches for it here). A variant or engine without a passing fidelity check
    measured on this host is refused unless `allow_lower_fidelity`, and then every report says LOWER FIDELITY.
    `inference=False` verifies the model and its settings without opening an engine: what the driver of a cluster
    run needs (its workers open their own)."""

    def __init__(self, model: str | Path | ModelContract, device: str = "auto",
                 confidence: float | str | None = None, seed: int = 0, read_workers: int = 4,
                 threads: int | None = None, rules: RegionRules = RegionRules(),
                 trusted_keys: Sequence[str | Path | PublicKey] | None = None, engine: str = AUTO,
                 ov_precision: str = "auto", allow_lower_fidelity: bool = False, inference: bool = True) -> None:
        self.contract = model if isinstance(model, ModelContract) else load_contract(model)
        keys = tuple(k if isinstance(k, PublicKey) else load_public_key(k)
                     for k in (trusted_keys_from_env() if trusted_keys is None else trusted_keys))
        self.signature = verify_signature(self.contract, list(keys))
        self.band = self.contract.band(confidence)
        self.engine_choice: dict[str, str] = {"requested": engine}
        self.session = None
        self.fidelity_notes: list[str] = []
        if inference:
            chosen, why = (choose_engine(self.contract, device, ov_precision) if engine == AUTO
                           else (engine, "asked for"))
            self.session = open_engine(self.contract, chosen, device, threads,
                                       resolve_ov_precision(self.contract, chosen, ov_precision))
            self.fidelity_notes = lower_fidelity_notes(self.contract, self.session, allow_lower_fidelity)
            if engine == AUTO and device == "auto" and chosen == ONNXRUNTIME and self.session.provider == CPU \
                    and CUDA in onnxruntime().get_available_providers():
                why = "CUDA is listed but did not start: ONNX Runtime ran on the CPU"
            self.engine_choice |= {"ran": chosen, "why": why}
        self.geometry = PatchGeometry.from_metadata(self.contract.patch)
        self.seed = seed
        self.read_workers = read_workers
        self.rules = rules
        self.settings = PredictorSettings(str(self.contract.path), device, confidence, seed, read_workers, threads,
                                          rules, keys, engine, ov_precision, allow_lower_fidelity)

    def for_run(self, seed: int, confidence: float | str | None, rules: RegionRules,
                read_workers: int) -> Predictor:
        """The same verified model and engine with another seed, confidence or region rules (a light copy)."""
        run = copy.copy(self)
        run.band = self.contract.band(confidence)
        run.seed, run.rules, run.read_workers = seed, rules, read_workers
        run.settings = replace(self.settings, seed=seed, confidence=confidence, rules=rules,
                               read_workers=read_workers)
        return run

    @property
    def provider(self) -> str:
        return self.session.provider if self.session is not None else "none (no engine opened here)"

    def regions(self, item: SlideInput, slide: Slide) -> Regions:
        """The slide's tumour regions: its annotations under this predictor's rules, else tissue detection."""
        if item.annotations is not None:
            return load_annotations(item.annotations, slide, self.rules)
        return detect_tissue(slide)

    def predict_case(self, slides: Sequence, annotations: Sequence | None = None, *, case_id: str | None = None,
                     specimens: Sequence[str] | None = None, mpp: MppRule | float | None = None,
                     level: int | None = None) -> CaseResult:
        """Sample the model's patches per case over the slides, run the model, and decide."""
        if self.session is None:
            raise ConfigurationError("this Predictor was built with inference=False: it verifies, it cannot predict")
        items = as_inputs(slides, annotations, specimens, mpp)
        case_id = check_case_id(case_id) if case_id is not None else case_id_from_path(items[0].path)
        timings = dict.fromkeys(("open", "regions", "read_and_sample", "resize", "inference", "verdict"), 0.0)
        start = time.perf_counter()
        opened: list[Slide] = []
        try:
            for item in items:
                opened.append(Slide(item.path, item.mpp))
            fingerprints = [slide.fingerprint() for slide in opened]  # a stat, and 4 MB read without a quickhash
            inputs = [input_identity(item, fingerprint) for item, fingerprint in zip(items, fingerprints)]
            plans = [plan_reads(slide, self.geometry, level) for slide in opened]  # before any pixel is read
            timings["open"] = time.perf_counter() - start
            t = time.perf_counter()
            try:
                regions = [self.regions(item, slide) for item, slide in zip(items, opened)]
            except InsufficientTissueError as exc:  # tissue detection found none: no patch is possible
                raise InsufficientTissueError(exc.problem, exc.path, possible=0,
                                              required=self.contract.patches_per_case) from None
            timings["regions"] = time.perf_counter() - t
            counts = allot_case(self.contract.patches_per_case, [item.specimen for item in items])
            patches, output, resize_s, infer_s = self._sample_and_infer(opened, regions, plans, counts)
            decisions = output.decisions
            if not (np.isfinite(decisions).all() and (output.score is None or np.isfinite(output.score))):
                raise InferenceError("the model returned non-finite decision values (NaN or infinity)",
                                     self.contract.path)
            timings["resize"] = resize_s
            timings["inference"] = infer_s
            timings["read_and_sample"] = time.perf_counter() - t - timings["regions"]
            t = time.perf_counter()
            band = (self.band.lower, self.band.upper) if self.band else None
            verdict = case_verdict(decisions, output.score if self.contract.bag_head else None, band,
                                   self.contract.class_names)
            timings["verdict"] = time.perf_counter() - t
            summaries = [
                SlideSummary(fingerprint=fingerprint, regions=reg.source,
                             region_area_mm2=reg.geometry.area * slide.mpp ** 2 / 1e6, level=plan.level.index,
                             downsample=plan.level.downsample, read_size=plan.read_size,
                             field_of_view_um=plan.field_of_view_um, patches=n,
                             notes=list(reg.notes) + ([plan.note] if plan.note else []))
                for slide, fingerprint, reg, plan, n in zip(opened, fingerprints, regions, plans, counts)]
        finally:
            for slide in opened:
                slide.close()
        timings["total"] = time.perf_counter() - start
        records = [{"slide": p.slide_index, "x": p.x, "y": p.y, "size_level0": p.size_level0, "level": p.level,
                    "decision": float(d)} for p, d in zip(patches, decisions)]
        if output.attention is not None:
            for record, weight in zip(records, output.attention.tolist()):
                record["attention"] = weight
        notes = [n for s in summaries for n in s.notes] + self.model_notes()
        return CaseResult(case_id=case_id, verdict=verdict, band=self.band, decisions=decisions,
                          patches=records, slides=summaries, seed=self.seed, provider=self.provider,
                          timings=timings, model=self.model_info(), notes=notes, engine=dict(self.engine_choice),
                          warning=DEMO_WARNING if self.contract.is_demo else None,
                          region_rules=self.rules.as_dict(), inputs=inputs, level=level,
                          regions=[r.geometry for r in regions],
                          calibration_sums=self.calibration_sums)

    def _sample_and_infer(self, slides: list[Slide], regions: list[Regions], plans: list[ReadPlan],
                          counts: list[int]) -> tuple[list[Patch], CaseOutput, float, float]:
        """Read patches in threads (all the case's slides at once) while the previous batch runs on the engine in
        another thread; a bag head runs once, on all the case's patches, when the last one is read."""
        bag = self.contract.bag_head
        batch_size = self.contract.patches_per_case if bag else self.session.batch_size
        patches: list[Patch] = []
        futures = []
        resize_times: list[float] = []

        def infer(batch: np.ndarray) -> tuple[CaseOutput | np.ndarray, float]:
            t = time.perf_counter()
            result = self.session.run_bag(batch) if bag else self.session.run(batch)[0]
            return result, time.perf_counter() - t

        with ThreadPoolExecutor(self.read_workers) as readers, ThreadPoolExecutor(1) as inference:
            pending: list[np.ndarray] = []
            try:  # closing: the slides' producers stop and join before the slides may close, whatever happens
                with closing(sample_case(slides, regions, counts, self.geometry, self.seed, readers, plans,
                                         resize_times)) as case_patches:
                    for patch in case_patches:
                        patches.append(patch)
                        pending.append(patch.pixels)
                        if len(pending) == batch_size:
                            futures.append(inference.submit(infer, np.stack(pending)))
                            pending = []
            except InsufficientTissueError as exc:  # counted for the case, not the slide's share
                raise InsufficientTissueError(exc.problem, exc.path, possible=len(patches),
                                              required=self.contract.patches_per_case) from None
            if pending:
                futures.append(inference.submit(infer, np.stack(pending)))
            results = [f.result() for f in futures]
        output = results[0][0] if bag else CaseOutput(np.concatenate([r[0] for r in results]).astype(np.float64),
                                                      None, None)
        return patches, output, float(sum(resize_times)), float(sum(r[1] for r in results))

    def model_notes(self) -> list[str]:
        """What every report of this model must say, from its record: bands calibrated in-sample (research only),
        and a variant or engine run without a passing fidelity check measured here (--allow-lower-fidelity)."""
        calibration = self.contract.record.calibration
        notes = [IN_SAMPLE_NOTE] if calibration is not None and calibration.in_sample else []
        return notes + self.fidelity_notes

    @property
    def calibration_sums(self) -> list[dict]:
        """The calibration patients' sums and labels the bands were fitted on."""
        calibration = self.contract.record.calibration
        return [] if calibration is None else list(calibration.sums)

    def model_info(self) -> dict[str, Any]:
        record = self.contract.record
        return {"path": str(self.contract.path), **self.contract.identity,
                "embedder": record.embedder.name, "head": record.head.kind, "classes": self.contract.classes,
                "score": "bag" if self.contract.bag_head else "patch-sum",
                "precision": self.contract.precision, "patches_per_case": self.contract.patches_per_case,
                "field_of_view_um": self.geometry.field_of_view_um, "demo": self.contract.is_demo,
                "signature": self.signature.as_dict()}
