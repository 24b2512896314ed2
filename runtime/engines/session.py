"""ONNX Runtime sessions for a verified netorigin model, on the provider the user asked for.

`cuda` asked for but not available is an error, never a silent CPU run: ONNX Runtime itself only logs
when it falls back, so the provider that actually runs is checked after the session is built.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import (
    ConfigurationError,
    DeviceError,
    InferenceError,
    MissingDependencyError,
    ModelError,
    first_line,
)
from ..model.contract import (
    ATTENTION_OUTPUT,
    BAG_SCORE_OUTPUT,
    DECISION_OUTPUT,
    EMBEDDING_OUTPUT,
    INPUT_NAME,
    ModelContract,
)
from ..model.record import FidelityRecord, MeasuredOn, host_hardware
from .outputs import CaseOutput, bag_output, bag_output_names

DEVICES = ("auto", "cpu", "cuda")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
# Patches per run: on CUDA a whole case of 100 in one run, never padded (cuDNN's heuristic search, not an exhaustive
# one per shape, so a short last batch costs no new search); on the CPU the product's batch, 16: with the memory
# pattern off (inference_session) predict's peak RSS went from 965 to 626 MB (benchmarks/results/memory-predict.md)
# and every decision stayed the same bits (tests/test_precision.py).
CUDA_BATCH = 128
CPU_BATCH = 16
ONNXRUNTIME, OPENVINO, AUTO = "onnxruntime", "openvino", "auto"
ENGINES = (AUTO, ONNXRUNTIME, OPENVINO)
# The model's own check of OpenVINO bf16 (`train`, calibration patients): what `auto` needs to choose it.
BF16_CHECK = "openvino-bf16"
# An INT8 file's own check on OpenVINO (its QDQ graph runs on OpenVINO's INT8 kernels, not ONNX Runtime's).
INT8_OPENVINO_CHECK = "openvino-int8"
MAX_DELTA_OVER_WIDTH = 0.01  # fidelity limit of bf16 and of fp16 / INT8 variants: |dS| <= 1 % of the band


INSTALL_HINT = "pip install 'netorigin[cpu]' (CPU) or 'netorigin[gpu]' (NVIDIA GPU)"


def onnxruntime() -> ModuleType:
    """The onnxruntime module; a base install carries neither distribution, so say which extra to install."""
    try:
        return importlib.import_module("onnxruntime")
    except ModuleNotFoundError as exc:
        if exc.name != "onnxruntime":
            raise
        raise MissingDependencyError(f"ONNX Runtime is not installed: {INSTALL_HINT}") from None


def _distributions() -> list[str]:
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def installed_runtime() -> str:
    """Which onnxruntime distribution is installed (they must not be mixed)."""
    return ", ".join(_distributions()) or f"onnxruntime=={onnxruntime().__version__}"


def _providers(device: str) -> list:
    if device == "cuda" and len(_distributions()) > 1:
        raise DeviceError("--device cuda: both onnxruntime and onnxruntime-gpu are installed and overwrite each "
                          "other; run: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
    ort = onnxruntime()
    available = ort.get_available_providers()
    if device == "cuda" and CUDA not in available:
        raise DeviceError(f"--device cuda: this onnxruntime build has no CUDA provider ({installed_runtime()}); "
                          "install netorigin[gpu] (onnxruntime-gpu) instead of onnxruntime")
    if device in ("cuda", "auto") and CUDA in available:
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            preload()
        # TF32 off: float32 parity with the CPU; the SVM head is float64 anyway.
        return [(CUDA, {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}), CPU]
    return [CPU]


@dataclass
class ModelSession:
    """An inference session plus the provider that really runs the model."""

    session: Any  # onnxruntime.InferenceSession
    provider: str
    device: str
    path: str | None = None  # the model file, named in errors
    io_binding: bool | None = None  # None: on CUDA (the input is copied to the device once, outputs come back)

    @property
    def measured_on(self) -> MeasuredOn:
        """What a fidelity check run on this session is evidence for."""
        return MeasuredOn(ONNXRUNTIME, onnxruntime().__version__, self.provider, host_hardware(self.provider))

    @property
    def batch_size(self) -> int:
        """Patches per run: the product's batch on the CPU, a whole case on CUDA."""
        return CUDA_BATCH if self.provider == CUDA else CPU_BATCH

    def warm_up(self, pixels: int) -> None:
        """One run of a full batch of blank patches, so that the first case does not pay for CUDA's memory arena
        and cuDNN's algorithm choice."""
        self.run(np.zeros((self.batch_size, pixels, pixels, 3), dtype=np.uint8))

    def run(self, patches: np.ndarray, with_embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Decision values (float64 [N]) and optionally embeddings for uint8 [N, P, P, 3] patches."""
        result = self._run([DECISION_OUTPUT] + ([EMBEDDING_OUTPUT] if with_embeddings else []), patches, "batch",
                           len(patches))
        return result[0], (result[1] if with_embeddings else None)

    def run_bag(self, patches: np.ndarray, with_embeddings: bool = False) -> CaseOutput:
        """A bag head's outputs for all the patches of a case in one run (never padded: padding joins the bag)."""
        return bag_output(self._run(bag_output_names(with_embeddings), patches, "bag", len(patches)))

    def _run(self, outputs: list[str], patches: np.ndarray, what: str, n: int) -> list:
        feed = np.ascontiguousarray(patches, dtype=np.uint8)
        try:
            bound = self.provider == CUDA if self.io_binding is None else self.io_binding
            return self._run_bound(outputs, feed) if bound else self.session.run(outputs, {INPUT_NAME: feed})
        except Exception as exc:  # onnxruntime's exceptions share no base class; out of memory is one of them
            raise InferenceError(f"ONNX Runtime failed on a {what} of {n} patches on {self.provider} "
                                 f"({first_line(exc)})", self.path) from None

    @cached_property
    def _bound_device(self) -> str:
        """Where the session really runs (asked once): the device IO binding copies the input to."""
        return "cuda" if self.session.get_providers()[0] == CUDA else "cpu"

    def _run_bound(self, outputs: list[str], feed: np.ndarray) -> list:
        """The run through IO binding: the uint8 input copied to the provider's device once, as an OrtValue, and the
        outputs bound to host memory."""
        binding = self.session.io_binding()
        value = onnxruntime().OrtValue.ortvalue_from_numpy(feed, self._bound_device, 0)
        binding.bind_ortvalue_input(INPUT_NAME, value)
        for name in outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def inference_session(model_bytes: bytes, path: str | Path, device: str = "auto", threads: int | None = None,
                      spinning: bool = True) -> tuple[Any, str]:
    """An ONNX Runtime session on verified bytes (no re-read, so what was hashed is what runs) and the provider that
    actually runs it; --device cuda never falls back silently. Shared by every model family."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    # Idle ONNX Runtime threads spin by default. Turning that off, so slide readers get the cores, changed nothing
    # measurable in benchmarks/case_time.py; the product keeps the default, the benchmark compares both.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    providers = _providers(device)  # a DeviceError of its own, not a model that cannot load
    if providers == [CPU]:
        # The memory pattern's block for a batch shape is a new arena chunk while the first run's chunks stay
        # held: off on the CPU, where it held predict's peak RSS above 700 MB; the same bits (see CPU_BATCH).
        options.enable_mem_pattern = False
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types without a common base
        raise ModelError(f"ONNX Runtime cannot load the model ({first_line(exc)})", path) from None
    actual = session.get_providers()[0]
    if device == "cuda" and actual != CUDA:
        raise DeviceError(f"--device cuda: the CUDA provider failed to start (CUDA/cuDNN libraries missing?); "
                          f"ONNX Runtime would have run on {actual}")
    return session, actual


def open_session(contract: ModelContract, device: str = "auto", threads: int | None = None,
                 spinning: bool = True) -> ModelSession:
    """The slide model's session, its inputs and outputs checked against the contract."""
    session, actual = inference_session(contract.model_bytes, contract.path, device, threads, spinning)
    names = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if INPUT_NAME not in names or DECISION_OUTPUT not in outputs:
        raise ModelError(f"model lacks input '{INPUT_NAME}' or output '{DECISION_OUTPUT}'", contract.path)
    if contract.bag_head and not {BAG_SCORE_OUTPUT, ATTENTION_OUTPUT} <= outputs:
        raise ModelError(f"the metadata declares a bag head but the graph lacks output '{BAG_SCORE_OUTPUT}' or "
                         f"'{ATTENTION_OUTPUT}'", contract.path)
    opened = ModelSession(session=session, provider=actual, device=device, path=str(contract.path))
    if actual == CUDA:
        opened.warm_up(contract.patch["pixels"])
    return opened


def check_problem(check: FidelityRecord | None, here: MeasuredOn, what: str) -> str | None:
    """Why `check` does not vouch for `what` on this host (None: it passed, measured on this engine, version,
    provider and hardware)."""
    if check is None:
        return f"{what} has no recorded fidelity check"
    if not check.passed:
        return f"{what} failed its fidelity check ({check.summary()})"
    differs = check.measured_on.differs_from(here)
    if differs is not None:
        return f"{what}'s fidelity check was measured elsewhere: {differs}"
    return None


def required_checks(contract: ModelContract, engine: str, ov_precision: str = "f32"
                    ) -> list[tuple[str, FidelityRecord | None]]:
    """The recorded checks that must vouch for running `contract` on `engine` (named, for messages): an fp16 /
    INT8 variant's check against its fp32 model on ONNX Runtime, or on OpenVINO the INT8 file's own OpenVINO
    check; OpenVINO bf16, the fp32 model's bf16 check. None needed: fp32 in float32 on any engine."""
    record, precision = contract.record, contract.precision
    checks = []
    if precision != "fp32" and engine == OPENVINO:
        checks.append((f"this {precision} model on OpenVINO", record.engine_checks.get(f"openvino-{precision}")))
    elif precision != "fp32":
        checks.append((f"this {precision} model", record.fidelity_vs_fp32))
    if engine == OPENVINO and ov_precision == "bf16":
        checks.append(("OpenVINO bf16", record.engine_checks.get(BF16_CHECK)))
    return checks


def fidelity_problems(contract: ModelContract, session: ModelSession | Any) -> list[str]:
    """What about this run lacks a passing check measured here (see required_checks)."""
    here = session.measured_on
    problems = [check_problem(check, here, what) for what, check in
                required_checks(contract, here.engine, getattr(session, "precision", "f32"))]
    return [p for p in problems if p is not None]


def lower_fidelity_notes(contract: ModelContract, session: ModelSession | Any, allowed: bool) -> list[str]:
    """Refuse a run whose precision or engine has no passing check measured on this host, or, when
    --allow-lower-fidelity was given, the LOWER FIDELITY note every report and case page then carries."""
    problems = fidelity_problems(contract, session)
    if problems and not allowed:
        raise ConfigurationError(f"{'; '.join(problems)}: use the fp32 model on ONNX Runtime, or pass "
                                 "--allow-lower-fidelity (every report then says LOWER FIDELITY)", contract.path)
    return [f"LOWER FIDELITY: {p}; use the fp32 model where the verdict matters" for p in problems]


def bf16_vouched(contract: ModelContract) -> tuple[bool, str]:
    """Whether OpenVINO bf16 may run this model here without being asked for by name, and why."""
    from .openvino_session import bf16_available, openvino_measured_on

    if not bf16_available():
        return False, "OpenVINO is not installed or this CPU has no bf16"
    problem = check_problem(contract.record.engine_checks.get(BF16_CHECK), openvino_measured_on("bf16"),
                            "OpenVINO bf16")
    if problem is not None:
        return False, problem
    check = contract.record.engine_checks[BF16_CHECK]
    return True, (f"OpenVINO bf16 passed this model's check, measured on this host ({check.verdict_flips} "
                  f"verdict flips, max |dS| / band width {check.max_abs_delta_s_over_band_width:.4f} on its "
                  "calibration patients)")


def int8_openvino_vouched(contract: ModelContract) -> tuple[bool, str]:
    """Whether OpenVINO may run this INT8 file here without being asked for by name: its own OpenVINO check passed,
    measured with this OpenVINO version on a CPU with this instruction set."""
    from .openvino_session import openvino_installed, openvino_measured_on

    if not openvino_installed():
        return False, "OpenVINO is not installed or its CPU plugin does not start"
    here = openvino_measured_on("f32")
    problem = check_problem(contract.record.engine_checks.get(INT8_OPENVINO_CHECK), here, "OpenVINO INT8")
    if problem is not None:
        return False, problem
    return True, f"OpenVINO runs this INT8 file: {contract.record.engine_checks[INT8_OPENVINO_CHECK].summary()}"


def choose_engine(contract: ModelContract, device: str, ov_precision: str = "auto") -> tuple[str, str]:
    """`auto`: on a CPU run, OpenVINO for an INT8 file whose own OpenVINO check passed here, and OpenVINO bf16 for
    an fp32 model where f32 was not asked for and its bf16 check passed (each measured with this OpenVINO version on
    a CPU with this instruction set); else ONNX Runtime. Returns the engine and why, for the report."""
    if device == "cuda" or (device == "auto" and CUDA in onnxruntime().get_available_providers()):
        return ONNXRUNTIME, "a GPU run"
    if contract.precision == "int8" and ov_precision in ("auto", "f32"):  # as its check ran: f32 around INT8
        vouched, why = int8_openvino_vouched(contract)
        return (OPENVINO, why) if vouched else (ONNXRUNTIME, why)
    if ov_precision == "f32":
        return ONNXRUNTIME, "--ov-precision f32 asked for: auto only chooses OpenVINO for bf16"
    vouched, why = bf16_vouched(contract)
    return (OPENVINO, why) if vouched else (ONNXRUNTIME, why)


def resolve_ov_precision(contract: ModelContract, engine: str, ov_precision: str) -> str:
    """OpenVINO's `auto` precision: bf16 only where this model's check vouches for it here, else f32 (an explicit
    bf16 request is kept, and then checked like any other); an INT8 file runs as checked, f32 around its INT8."""
    if engine != OPENVINO or ov_precision != "auto":
        return ov_precision
    if contract.precision == "int8":
        return "f32"
    return "bf16" if bf16_vouched(contract)[0] else "f32"


def open_engine(contract: ModelContract, engine: str = ONNXRUNTIME, device: str = "auto",
                threads: int | None = None, ov_precision: str = "auto") -> ModelSession | Any:
    """ONNX Runtime on `device`, or OpenVINO on the CPU (`auto` is resolved by the caller with choose_engine); both
    run the verified bytes and return float64 decisions."""
    if engine == ONNXRUNTIME:
        return open_session(contract, device, threads)
    if engine != OPENVINO:
        raise ConfigurationError(f"unknown engine {engine!r} (choose from {ONNXRUNTIME}, {OPENVINO})")
    if device == "cuda":
        raise DeviceError("--engine openvino runs on the CPU: use --device cpu or auto, or --engine onnxruntime")
    from .openvino_session import open_openvino

    return open_openvino(contract, ov_precision, threads)
