"""OpenVINO on the CPU for the same ONNX file: bf16 inference where the CPU has it (AVX512-BF16 / AMX), f32
otherwise. An optional extra (`openvino`, about 200 MB); the model file stays the one artifact.

OpenVINO reads the .onnx bytes that `load_contract` verified, so what was hashed is what runs; the float64 head
compiles and runs as it is. Whether bf16 is available is asked of OpenVINO (`OPTIMIZATION_CAPABILITIES`), never
guessed from the CPU's name. bf16 changes decisions slightly: its fidelity (verdict flips, |dS| / band width
against ONNX Runtime fp32) is measured per model in the benchmarks, not assumed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ConfigurationError, InferenceError, MissingDependencyError, ModelError, first_line
from ..model.contract import DECISION_OUTPUT, EMBEDDING_OUTPUT, INPUT_NAME, ModelContract
from ..model.record import MeasuredOn, cpu_features
from .outputs import CaseOutput, bag_output, bag_output_names

PRECISIONS = ("auto", "bf16", "f32")
INSTALL_HINT = "pip install 'netorigin[openvino]'"
BATCH = 32


def openvino() -> ModuleType:
    """The openvino module, or a one-line error saying which extra to install."""
    try:
        return importlib.import_module("openvino")
    except ModuleNotFoundError:
        raise MissingDependencyError(f"--engine openvino needs OpenVINO: {INSTALL_HINT}") from None


@cache
def _core_and_capabilities() -> tuple[Any, tuple[str, ...]]:
    """One OpenVINO Core per process and what it says the CPU can do (asked once)."""
    core = openvino().Core()
    return core, tuple(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _capabilities() -> tuple[str, ...] | None:
    """What OpenVINO says the CPU can do; None where it is not installed or its CPU plugin does not answer."""
    try:
        return _core_and_capabilities()[1]
    except Exception:  # not installed, or a broken install / CPU plugin
        return None


def openvino_installed() -> bool:
    """OpenVINO is installed and its CPU plugin answers."""
    return _capabilities() is not None


def bf16_available() -> bool:
    """OpenVINO is installed and says this CPU runs bf16 (AVX512-BF16 / AMX); else `auto` keeps ONNX Runtime."""
    return "BF16" in (_capabilities() or ())


@dataclass
class OpenVinoSession:
    """A compiled OpenVINO model on the CPU; `run` matches ModelSession.run (float64 decisions)."""

    compiled: Any
    precision: str
    version: str
    path: str | None = None
    device: str = "cpu"
    batch_size: int = BATCH

    @property
    def provider(self) -> str:
        """The engine, device and precision that actually ran, as reports name them."""
        return f"OpenVINO {self.version} CPU {self.precision}"

    @property
    def measured_on(self) -> MeasuredOn:
        return openvino_measured_on(self.precision)

    def _infer(self, patches: np.ndarray, what: str) -> dict:
        try:
            return self.compiled.create_infer_request().infer(
                {INPUT_NAME: np.ascontiguousarray(patches, dtype=np.uint8)})
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise InferenceError(f"OpenVINO failed on a {what} of {len(patches)} patches ({first_line(exc)})",
                                 self.path) from None

    def run(self, patches: np.ndarray, with_embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self._infer(patches, "batch")
        decisions = np.asarray(outputs[self.compiled.output(DECISION_OUTPUT)], dtype=np.float64)
        embeddings = np.asarray(outputs[self.compiled.output(EMBEDDING_OUTPUT)]) if with_embeddings else None
        return decisions, embeddings

    def run_bag(self, patches: np.ndarray, with_embeddings: bool = False) -> CaseOutput:
        """A bag head's outputs for all the patches of a case in one request."""
        outputs = self._infer(patches, "bag")
        return bag_output([outputs[self.compiled.output(name)] for name in bag_output_names(with_embeddings)])


def openvino_version() -> str:
    return openvino().__version__.split("-")[0]


def openvino_measured_on(precision: str) -> MeasuredOn:
    """What a fidelity check of OpenVINO at `precision` on this CPU is evidence for."""
    return MeasuredOn("openvino", openvino_version(), f"CPU {precision}", cpu_features())


def open_openvino(contract: ModelContract, precision: str = "auto", threads: int | None = None) -> OpenVinoSession:
    """Compile the verified model bytes for the CPU; `auto` = bf16 where the CPU supports it, else f32."""
    if precision not in PRECISIONS:
        raise ConfigurationError(f"unknown OpenVINO precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    core, capabilities = _core_and_capabilities()
    if precision == "bf16" and "BF16" not in capabilities:
        raise ConfigurationError(f"--ov-precision bf16: this CPU has no bf16 (OpenVINO lists "
                                 f"{', '.join(capabilities)}); use auto or f32")
    chosen = "bf16" if precision == "bf16" or (precision == "auto" and "BF16" in capabilities) else "f32"
    return openvino_session(contract.model_bytes, contract.path, chosen, threads)


def openvino_session(model_bytes: bytes, path: str | Path, precision: str, threads: int | None = None
                     ) -> OpenVinoSession:
    """Verified bytes (or an in-memory candidate, `path` naming it) compiled for the CPU at `precision`."""
    core, _ = _core_and_capabilities()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(core.read_model(model_bytes, b""), "CPU", config)
    except Exception as exc:  # OpenVINO's own exception types
        raise ModelError(f"OpenVINO cannot compile the model ({first_line(exc)})", path) from None
    return OpenVinoSession(compiled=compiled, precision=precision, version=openvino_version(), path=str(path))
