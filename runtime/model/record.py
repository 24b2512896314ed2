"""The model record: everything beyond the graph, bands and patch rules that decides what a report says or whether a
verdict is earned, typed and read and written here only.

It is stored as `netorigin.record` and sits inside the verdict digest (schema 3), so editing any of it (the demo
flag, the in-sample flag, a fidelity check) changes the model's identity. `provenance` keeps only what describes the
build (versions, cohort counts, split source) and is never read to decide anything.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

# Instruction sets that change float arithmetic in ONNX Runtime or OpenVINO kernels: a fidelity check measured on a
# CPU with another set of these is not evidence for this one.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8",
                "amx_tile", "asimd", "sve", "bf16")


@cache
def cpu_features() -> str:
    """This CPU's architecture and arithmetic-relevant instruction sets, e.g. 'x86_64 avx2 avx512_bf16 avx512f'."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return " ".join([platform.machine()] + sorted(flags & set(CPU_FEATURES)))


@cache
def gpu_name() -> str:
    """The NVIDIA GPU's name (nvidia-smi), or 'unknown NVIDIA GPU'."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20, check=True)
        return done.stdout.splitlines()[0].strip() or "unknown NVIDIA GPU"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown NVIDIA GPU"


def host_hardware(provider: str) -> str:
    """The hardware an ONNX Runtime provider computes on: the GPU for CUDA / TensorRT, else this CPU."""
    return gpu_name() if provider.startswith(("CUDA", "Tensorrt")) else cpu_features()


@dataclass(frozen=True)
class MeasuredOn:
    """Where a fidelity check ran: a check is evidence only for the same engine, version, provider and hardware."""

    engine: str  # onnxruntime | openvino
    version: str
    provider: str  # CPUExecutionProvider, CUDAExecutionProvider, CPU bf16 (OpenVINO), ...
    hardware: str  # cpu_features() for a CPU provider, the GPU's name for CUDA

    def differs_from(self, other: MeasuredOn) -> str | None:
        """What differs from `other` (this host), in words; None when the check applies here."""
        for name in ("engine", "version", "provider", "hardware"):
            if getattr(self, name) != getattr(other, name):
                return f"{name} {getattr(self, name)!r} (here {getattr(other, name)!r})"
        return None


@dataclass(frozen=True)
class FidelityRecord:
    """A variant or engine against ONNX Runtime fp32 on the calibration patients: verdict flips under each model's
    own bands at every band, max |dS| / fp32 band width; passed at 0 flips and |dS| within the threshold."""

    verdict_flips: int
    max_abs_delta_s_over_band_width: float | None
    patients: int
    bands_checked: int
    edge_patients_skipped: int
    threshold: float
    passed: bool
    measured_on: MeasuredOn

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FidelityRecord:
        return cls(**(doc | {"measured_on": MeasuredOn(**doc["measured_on"])}))

    def summary(self) -> str:
        ratio = self.max_abs_delta_s_over_band_width
        moved = "an unmeasured amount" if ratio is None else f"up to {ratio:.1%} of the band width"
        return (f"on its {self.patients} calibration patients S moved by {moved} (limit {self.threshold:.0%}) with "
                f"{self.verdict_flips} verdict flips over {self.bands_checked} bands")


@dataclass(frozen=True)
class EmbedderRecord:
    """The embedder by its weights, and the patients that trained them here (`finetune`; None: not trained by
    netorigin, e.g. ImageNet or a published checkpoint)."""

    name: str
    weights_sha256: str
    trained_on_patients_sha256: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EmbedderRecord:
        trained = doc.get("trained_on_patients_sha256")
        return cls(doc["name"], doc["weights_sha256"], None if trained is None else tuple(trained))


@dataclass(frozen=True)
class HeadRecord:
    """The head's kind and the digests of the patients it was fitted on (never their ids)."""

    kind: str
    fit_patients_sha256: tuple[str, ...]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> HeadRecord:
        return cls(doc["kind"], tuple(doc["fit_patients_sha256"]))


@dataclass(frozen=True)
class CalibrationRecord:
    """Where the bands came from: whose decisions, which patients, whether they were held out and whether that was
    checked (patient ids known and the fit patients known)."""

    origin: str  # e.g. "train", "calibrate --sums runs.csv", "export --bands bands.json"
    decisions: str  # what produced the sums: "this model on ONNX Runtime (CPU)", "the fp32 head", "unknown (a table)"
    n_pi: int
    n_other: int
    patients_sha256: tuple[str, ...]  # empty when the sums carried no patient ids
    in_sample: bool
    in_sample_patients: int
    checked_against_fit: bool
    sums: tuple[dict, ...] = ()  # {label, s} sorted by s: what the case page plots the band against

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CalibrationRecord:
        return cls(**(doc | {"patients_sha256": tuple(doc["patients_sha256"]), "sums": tuple(doc["sums"])}))


@dataclass(frozen=True)
class ModelRecord:
    """Everything a report depends on besides graph, classes, patch and case rules and bands (their own keys)."""

    demo: bool
    embedder: EmbedderRecord
    head: HeadRecord
    calibration: CalibrationRecord | None = None  # None: exported with --no-bands
    fidelity_vs_fp32: FidelityRecord | None = None  # fp16 / INT8 variants
    engine_checks: dict[str, FidelityRecord] = field(default_factory=dict)  # e.g. openvino-bf16 on the fp32 model

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ModelRecord:
        return cls(
            demo=doc["demo"], embedder=EmbedderRecord.from_json(doc["embedder"]),
            head=HeadRecord.from_json(doc["head"]),
            calibration=None if doc["calibration"] is None else CalibrationRecord.from_json(doc["calibration"]),
            fidelity_vs_fp32=None if doc["fidelity_vs_fp32"] is None
            else FidelityRecord.from_json(doc["fidelity_vs_fp32"]),
            engine_checks={k: FidelityRecord.from_json(v) for k, v in doc["engine_checks"].items()})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def with_bands_from(self, calibration: CalibrationRecord) -> ModelRecord:
        """The record after new bands: every check measured under the old bands no longer applies, so it is dropped
        (an engine or precision then needs its check again before `auto` or a plain request may use it)."""
        return replace(self, calibration=calibration, fidelity_vs_fp32=None, engine_checks={})

    def carried_forward_from(self, previous: ModelRecord) -> str | None:
        """Why this record may not replace `previous` when a model is rewritten (None: it may): the embedder, the
        head and the demo flag belong to the graph and never change without a new export."""
        for name in ("demo", "embedder", "head"):
            if getattr(self, name) != getattr(previous, name):
                return f"the rewrite changes the model record's {name!r}, which only a new export may set"
        return None
