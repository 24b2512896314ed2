"""The versions every report records, whatever the case kind: netorigin, the engine's distribution, numpy, Python."""

from __future__ import annotations

import platform
from functools import cache
from importlib import metadata

import numpy as np

from ..engines.session import installed_runtime, onnxruntime


@cache
def versions() -> dict[str, str]:
    try:
        own = metadata.version("netorigin")
    except metadata.PackageNotFoundError:
        own = "0+unknown"
    return {"netorigin": own, "onnxruntime": onnxruntime().__version__, "onnxruntime_dist": installed_runtime(),
            "numpy": np.__version__, "python": platform.python_version()}
