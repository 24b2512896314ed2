"""What this install can do and why: versions, engines and the providers that really start, the CPU's instruction
sets, OpenSlide and DICOM, the optional extras, trusted keys, memory and cores; for a model, its identity and
signature and what `auto` would run it on here. `netorigin doctor` prints it; nothing here changes anything."""

from __future__ import annotations

import importlib
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import first_line
from ..model.protobuf_fields import encode_varint, length_delimited
from ..model.record import cpu_features

# The extras a user may add to the lean runtime: a distribution each installs, and the modules it must bring.
EXTRAS = {"cpu": ("onnxruntime", ("onnxruntime",)), "gpu": ("onnxruntime-gpu", ("onnxruntime",)),
          "signing": ("cryptography", ("cryptography",)), "dask": ("distributed", ("distributed",)),
          "openvino": ("openvino", ("openvino",)),
          "dicom": ("highdicom", ("pydicom", "highdicom", "wsidicom", "dicomweb_client")),
          "mri": ("SimpleITK", ("SimpleITK", "highdicom", "dicomweb_client")), "export": ("torch", ("torch",))}


def _message(*fields: bytes) -> bytes:
    return b"".join(fields)


def _text(field: int, value: str) -> bytes:
    return length_delimited(field, value.encode())


def _number(field: int, value: int) -> bytes:
    return encode_varint(field << 3) + encode_varint(value)


def probe_model() -> bytes:
    """A one-node ONNX model (Identity on a float tensor of 1), written with the runtime's own protobuf helpers:
    what a provider must run to count as starting here."""
    tensor = length_delimited(1, _message(_number(1, 1), length_delimited(2, length_delimited(1, _number(1, 1)))))

    def value(name: str) -> bytes:
        return _message(_text(1, name), length_delimited(2, tensor))

    node = _message(_text(1, "x"), _text(2, "y"), _text(4, "Identity"))
    graph = _message(length_delimited(1, node), _text(2, "probe"), length_delimited(11, value("x")),
                     length_delimited(12, value("y")))
    return _message(_number(1, 8), length_delimited(7, graph), length_delimited(8, _number(2, 13)))


def providers_that_start() -> dict[str, str]:
    """Each provider ONNX Runtime lists, tried for real on the probe model: 'starts', or why not."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ModuleNotFoundError:
        return {}
    found = {}
    for provider in ort.get_available_providers():
        try:
            session = ort.InferenceSession(probe_model(), providers=[provider])
            ran = session.get_providers()[0]
            session.run(None, {"x": np.ones(1, dtype=np.float32)})
            found[provider] = "starts" if ran == provider else f"listed, but ONNX Runtime fell back to {ran}"
        except Exception as exc:  # each provider fails in its own way (missing CUDA libraries, no device)
            found[provider] = f"does not start ({first_line(exc, 120)})"
    return found


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:  # not installed, blocked, or a broken install: the extra cannot be used either way
        return False


def _present(distribution: str, modules: tuple[str, ...]) -> bool:
    """An extra is there when its distribution is installed and every module it brings imports."""
    return _version(distribution) is not None and all(_importable(module) for module in modules)


def _openslide() -> dict[str, Any]:
    try:
        import openslide
    except (ModuleNotFoundError, OSError) as exc:
        return {"installed": False, "why": first_line(exc)}
    major = int(openslide.__library_version__.split(".")[0])
    return {"installed": True, "library": openslide.__library_version__, "python": openslide.__version__,
            "reads_dicom": major >= 4}


def _openvino() -> dict[str, Any]:
    from ..engines.openvino_session import bf16_available

    version = _version("openvino")
    return {"installed": version is not None, "version": version, "bf16": bool(version) and bf16_available()}


def _memory() -> dict[str, int | None]:
    """Total and available memory (MiB) from /proc/meminfo, where there is one."""
    values = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, amount = line.split(":", 1)
            values[name] = int(amount.split()[0]) // 1024
    except (OSError, ValueError):
        pass
    return {"total_mib": values.get("MemTotal"), "available_mib": values.get("MemAvailable")}


def host_report() -> dict[str, Any]:
    """What this install and host can do (no model involved)."""
    from ..model.signing import trusted_keys_from_env

    return {
        "python": platform.python_version(), "executable": sys.executable,
        "netorigin": _version("netorigin") or "0+unknown",
        "onnxruntime": {"distributions": {d: v for d in ("onnxruntime", "onnxruntime-gpu")
                                          if (v := _version(d)) is not None},
                        "providers": providers_that_start()},
        "openvino": _openvino(),
        "cpu": {"instruction_sets": cpu_features(), "cores": os.cpu_count()},
        "memory": _memory(),
        "openslide": _openslide(),
        "extras": {extra: _present(dist, modules) for extra, (dist, modules) in EXTRAS.items()},
        "trusted_keys": [str(k) for k in trusted_keys_from_env()],
    }


def _keys(trusted_keys: list[str]) -> list:
    from ..model.signing import load_public_key, trusted_keys_from_env

    return [load_public_key(k) for k in (trusted_keys or trusted_keys_from_env())]


def model_report(path: str | Path, trusted_keys: list[str]) -> dict[str, Any]:
    """A model's identity, signature and fidelity records, and what `auto` runs it on here and why: the engine is
    opened as `predict` opens it, so the provider that really runs and what `predict` would refuse are measured,
    not guessed. Raises the model's one-line error when it cannot be loaded."""
    from ..engines.session import (
        CPU,
        CUDA,
        choose_engine,
        fidelity_problems,
        onnxruntime,
        open_engine,
        resolve_ov_precision,
    )
    from ..errors import MissingDependencyError
    from ..families import is_mri_model
    from ..model.contract import load_contract
    from ..model.signing import verify_signature

    if is_mri_model(path):
        return mri_model_report(path, trusted_keys)
    contract = load_contract(path)
    signature = verify_signature(contract, _keys(trusted_keys))
    engine, why = choose_engine(contract, "auto", "auto")
    ov_precision = resolve_ov_precision(contract, engine, "auto")
    auto: dict[str, Any] = {"engine": engine, "ov_precision": ov_precision, "why": why, "provider": None,
                            "refused": []}
    try:
        session = open_engine(contract, engine, "auto", None, ov_precision)
    except MissingDependencyError:  # no ONNX Runtime: can_run names what to install
        session = None
    if session is not None:
        auto |= {"provider": session.provider, "refused": fidelity_problems(contract, session)}
        if session.provider == CPU and CUDA in onnxruntime().get_available_providers():
            auto["why"] = "CUDA is listed but did not start: ONNX Runtime runs it on the CPU"
    record = contract.record
    checks = {name: check.summary() for name, check in record.engine_checks.items()}
    if record.fidelity_vs_fp32 is not None:
        checks["vs fp32"] = record.fidelity_vs_fp32.summary()
    return {"path": str(contract.path), "family": "slide", **contract.identity, "demo": contract.is_demo,
            "precision": contract.precision, "signature": signature.as_dict(), "fidelity_checks": checks,
            "auto": auto}


def mri_model_report(path: str | Path, trusted_keys: list[str]) -> dict[str, Any]:
    """An MRI lesion model's identity, signature, kind and inputs, and what runs it here: ONNX Runtime only (CUDA
    where its provider is listed, else the CPU), with SimpleITK to read its DICOM series."""
    from ..engines.session import CUDA, onnxruntime
    from ..model.signing import verify_signature
    from ..mri.contract import load_mri_contract

    contract = load_mri_contract(path)
    signature = verify_signature(contract, _keys(trusted_keys))
    cuda = CUDA in onnxruntime().get_available_providers()
    return {"path": str(contract.path), "family": "mri", **contract.identity, "demo": contract.is_demo,
            "precision": "fp32", "kind": contract.kind, "sequences": list(contract.sequences),
            "classes": list(contract.classes),
            "clinical_fields": None if contract.clinical is None else [f.name for f in contract.clinical],
            "signature": signature.as_dict(), "fidelity_checks": {},
            "auto": {"engine": "onnxruntime", "ov_precision": None,
                     "why": ("CUDA is listed: --device auto runs it there" if cuda else "the CPU (no CUDA provider)")
                     + "; MRI lesion models run on ONNX Runtime fp32 only"}}


def can_run(report: dict[str, Any]) -> list[str]:
    """Why this install cannot run a model at all (empty: it can)."""
    problems = []
    if not report["onnxruntime"]["distributions"]:
        problems.append("ONNX Runtime is not installed: pip install 'netorigin[cpu]' (CPU) or 'netorigin[gpu]'")
    elif not any(state == "starts" for state in report["onnxruntime"]["providers"].values()):
        problems.append("no ONNX Runtime provider starts here")
    model = report.get("model", {})
    if model.get("family") != "mri" and not report["openslide"]["installed"]:  # MRI models read no slide
        problems.append(f"OpenSlide cannot be loaded ({report['openslide']['why']})")
    if model.get("family") == "mri" and not report["extras"]["mri"]:
        problems.append("this MRI model's DICOM series need SimpleITK: pip install 'netorigin[mri]'")
    problems += [f"predict refuses it here: {problem} (--allow-lower-fidelity runs it, and every report then says "
                 "LOWER FIDELITY)" for problem in model.get("auto", {}).get("refused", [])]
    return problems

