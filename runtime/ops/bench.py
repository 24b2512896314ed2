"""Throughput on this host, for users measuring their own hardware: every installed engine x precision the given
models carry, patches/s at the product's batch and at the best batch, one case open -> verdict, each beside its
fidelity record, and the fastest configuration that passed its check.

Measured side by side: all configurations are open at once and interleaved within every repetition (they share
the machine's state); each case repetition opens the slide anew with a new seed. Throughput runs on the slide's
own sampled patches.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.session import (
    CUDA,
    ONNXRUNTIME,
    OPENVINO,
    fidelity_problems,
    installed_runtime,
    onnxruntime,
    required_checks,
)
from ..errors import ConfigurationError, NetoriginError
from ..model.contract import ModelContract, load_contract
from ..model.record import cpu_features
from ..slide.predictor import Predictor, SlideInput
from ..slide.sampling import sample_slide
from ..slide.slide import Slide

MIN_REPS = 5
DEFAULT_BATCHES = (8, 32, 64, 128)


def spread(values: Sequence[float], digits: int | None = None) -> dict[str, float]:
    """Median and min-max of repeated measurements (rounded to `digits` when given)."""
    def r(value: float) -> float:
        return value if digits is None else round(value, digits)

    return {"median": r(statistics.median(values)), "min": r(min(values)), "max": r(max(values)), "n": len(values)}


@dataclass(frozen=True)
class Configuration:
    """One model file on one engine, device and (OpenVINO) inference precision."""

    contract: ModelContract
    engine: str
    device: str
    ov_precision: str = "f32"

    @property
    def name(self) -> str:
        where = f"onnxruntime {self.device}" if self.engine == ONNXRUNTIME else f"openvino {self.ov_precision}"
        return f"{self.contract.path.name} ({self.contract.precision}) on {where}"


def configurations(contracts: Sequence[ModelContract], device: str = "auto") -> list[Configuration]:
    """Every engine x device x precision installed here, for each model: ONNX Runtime on the CPU and, where its
    provider is listed, CUDA; OpenVINO f32, and bf16 where this CPU has it (fp32 models only: a variant already
    carries its precision)."""
    from ..engines.openvino_session import bf16_available

    found = []
    cuda_listed = CUDA in onnxruntime().get_available_providers()
    try:
        import openvino  # noqa: F401  (a broken install is listed, and its row says why it did not start)
        has_openvino = True
    except ImportError:
        has_openvino = False
    for contract in contracts:
        if device in ("auto", "cpu"):
            found.append(Configuration(contract, ONNXRUNTIME, "cpu"))
        if device in ("auto", "cuda") and (cuda_listed or device == "cuda"):
            found.append(Configuration(contract, ONNXRUNTIME, "cuda"))
        if device in ("auto", "cpu") and has_openvino:
            found.append(Configuration(contract, OPENVINO, "cpu", "f32"))
            if contract.precision == "fp32" and bf16_available():
                found.append(Configuration(contract, OPENVINO, "cpu", "bf16"))
    return found


@dataclass
class Row:
    """What one configuration measured (or why it did not start)."""

    configuration: Configuration
    predictor: Predictor | None = None
    failed: str | None = None
    product_batch: int = 0
    rates: dict[int, list[float]] = field(default_factory=dict)  # batch -> patches/s per repetition
    case_seconds: list[float] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What this configuration lacks to be trusted here: a passing fidelity check measured on this host."""
        return fidelity_problems(self.configuration.contract, self.predictor.session) if self.predictor else []

    @property
    def passed(self) -> bool:
        return self.predictor is not None and not self.problems

    def fidelity_record(self) -> str:
        """The model's own record for this configuration, in words (its first required check)."""
        config = self.configuration
        checks = required_checks(config.contract, config.engine, config.ov_precision)
        if checks:
            check = checks[0][1]
            return "no recorded check" if check is None else check.summary()
        if config.engine == ONNXRUNTIME and config.device == "cpu":
            return "the reference: fp32 on ONNX Runtime's CPU provider"
        return "float32 on another engine or device: run without a check (compared with the reference here)"


def slide_patches(predictor: Predictor, item: SlideInput, count: int) -> np.ndarray:
    """`count` patches of the slide as the model samples them (seed 0), repeated when the case has fewer."""
    with Slide(item.path, item.mpp) as slide, ThreadPoolExecutor(predictor.read_workers) as readers:
        regions = predictor.regions(item, slide)
        pixels = np.stack([p.pixels for p in sample_slide(slide, regions, predictor.contract.patches_per_case,
                                                          predictor.geometry, 0, 0, readers)])
    return np.resize(pixels, (count, *pixels.shape[1:]))


def _is_reference(config: Configuration, first: ModelContract) -> bool:
    return config.contract is first and config.contract.precision == "fp32" and config.engine == ONNXRUNTIME \
        and config.device == "cpu"


def _comparable(contract: ModelContract, reference: ModelContract) -> bool:
    """Variants of one export share its embedder and head records: their sums may be compared."""
    return contract.record.embedder == reference.record.embedder and contract.record.head == reference.record.head


def open_configurations(models: Sequence[str], device: str = "auto", batches: Sequence[int] = DEFAULT_BATCHES,
                        threads: int | None = None, read_workers: int = 4,
                        trusted_keys: Sequence[Any] | None = None) -> list[Row]:
    """Every configuration of `models` opened (all at once: they are measured interleaved); one that does not
    start here is kept with the reason. A model that cannot be loaded stops everything, in one line."""
    if not batches or min(batches) < 1:
        raise ConfigurationError("--batch sizes must be positive")
    rows = [Row(config) for config in configurations([load_contract(path) for path in models], device)]
    for row in rows:
        config = row.configuration
        try:
            row.predictor = Predictor(config.contract, device=config.device, engine=config.engine,
                                      ov_precision=config.ov_precision, threads=threads, read_workers=read_workers,
                                      trusted_keys=trusted_keys, allow_lower_fidelity=True)
        except NetoriginError as exc:  # an engine or device that does not start here is a finding, not an end
            row.failed = str(exc)
            continue
        contract = config.contract
        row.product_batch = contract.patches_per_case if contract.bag_head else row.predictor.session.batch_size
        row.rates = {b: [] for b in sorted({*batches, row.product_batch})}
    if not any(row.predictor for row in rows):
        raise ConfigurationError("no engine started here: " + "; ".join(f"{r.configuration.name}: {r.failed}"
                                                                        for r in rows))
    return rows


def steps(rows: list[Row], reps: int) -> int:
    """How many measurements `measure` makes (the progress bar's length)."""
    return reps * sum(len(row.rates) + 1 for row in rows if row.predictor)


def measure(rows: list[Row], slide: SlideInput, reps: int = MIN_REPS, seed: int = 1,
            on_step: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Measure the opened configurations on `slide`, interleaved within each repetition: patches/s at each batch
    on the slide's own patches, then one case open -> verdict with seed `seed + repetition` on a new handle.
    Returns the JSON record (README, `netorigin bench`)."""
    if reps < MIN_REPS:
        raise ConfigurationError(f"--reps {reps}: a figure needs at least {MIN_REPS} repetitions (median, min-max)")
    running = [row for row in rows if row.predictor is not None]
    largest = max(max(row.rates) for row in running)
    pixels: dict[str, np.ndarray] = {}
    for row in running:
        key = row.configuration.contract.verdict_sha256
        if key not in pixels:
            pixels[key] = slide_patches(row.predictor, slide, largest)
    for row in running:  # warm-up: first runs allocate and choose kernels
        for batch in row.rates:
            row.predictor.session.run(pixels[row.configuration.contract.verdict_sha256][:batch])
    for rep in range(reps):
        for row in running:
            patches = pixels[row.configuration.contract.verdict_sha256]
            for batch in row.rates:
                start = time.perf_counter()
                row.predictor.session.run(patches[:batch])
                row.rates[batch].append(batch / (time.perf_counter() - start))
                on_step()
            run = row.predictor.for_run(seed + rep, None, row.predictor.rules, row.predictor.read_workers)
            result = run.predict_case([slide])
            row.case_seconds.append(result.timings["total"])
            row.sums.append(result.verdict.patient_sum)
            row.verdicts.append(result.verdict.verdict)
            on_step()
    return _record(rows, slide, reps, seed)


def _record(rows: list[Row], slide: SlideInput, reps: int, seed: int) -> dict[str, Any]:
    first = rows[0].configuration.contract
    reference = next((r for r in rows if r.predictor and _is_reference(r.configuration, first)), None)
    out = []
    for row in rows:
        config = row.configuration
        entry: dict[str, Any] = {
            "configuration": config.name, "model": str(config.contract.path), "precision": config.contract.precision,
            "verdict_sha256": config.contract.verdict_sha256, "engine": config.engine, "device": config.device,
            "ov_precision": config.ov_precision if config.engine == OPENVINO else None,
            "fidelity": {"record": row.fidelity_record(), "passed_here": row.passed, "problems": row.problems,
                         "reference": row is reference}}
        if row.predictor is None:
            out.append(entry | {"started": False, "why": row.failed})
            continue
        medians = {b: statistics.median(r) for b, r in row.rates.items()}
        best = max(medians, key=medians.get)
        entry |= {"started": True, "provider": row.predictor.provider, "product_batch": row.product_batch,
                  "best_batch": best,
                  "patches_per_s": {str(b): spread(r, 1) for b, r in row.rates.items()},
                  "case_open_to_verdict_s": spread(row.case_seconds, 3),
                  "verdicts": row.verdicts, "patient_sums": row.sums}
        entry |= _against(row, reference)
        out.append(entry)
    return {"host": host_record(), "slide": str(slide.path), "annotations": None if slide.annotations is None
            else str(slide.annotations), "repetitions": reps, "seeds": [seed + r for r in range(reps)],
            "configurations": out, "recommendation": recommend(rows)}


def _against(row: Row, reference: Row | None) -> dict[str, Any]:
    """Verdict flips and max |dS| / band width against ONNX Runtime fp32 on the same seeds (None: not comparable)."""
    if reference is None or not _comparable(row.configuration.contract, reference.configuration.contract):
        return {"vs_reference": None}
    band = reference.predictor.band
    delta = max(abs(a - b) for a, b in zip(row.sums, reference.sums))
    return {"vs_reference": {"verdict_flips": sum(a != b for a, b in zip(row.verdicts, reference.verdicts)),
                             "max_abs_dS": delta,
                             "max_abs_dS_over_band_width": None if band is None else delta / (band.upper - band.lower)}}


def recommend(rows: list[Row]) -> dict[str, Any] | None:
    """The fastest configuration, one case open -> verdict, among those that passed their fidelity check here."""
    passed = [row for row in rows if row.passed]
    if not passed:
        return None
    best = min(passed, key=lambda row: statistics.median(row.case_seconds))
    return {"configuration": best.configuration.name, "engine": best.configuration.engine,
            "device": best.configuration.device, "model": str(best.configuration.contract.path),
            "ov_precision": best.configuration.ov_precision if best.configuration.engine == OPENVINO else None,
            "why": "fastest case open -> verdict (median) among the configurations whose fidelity check passed on "
                   "this host or that need none"}


def host_record() -> dict[str, Any]:
    """The host the figures belong to."""
    try:
        from ..engines.openvino_session import openvino_version

        openvino = openvino_version()
    except NetoriginError:
        openvino = None
    return {"cpu": cpu_features(), "cores": os.cpu_count(), "onnxruntime": installed_runtime(),
            "openvino": openvino}
