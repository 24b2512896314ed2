"""Helpers shared by the benchmark scripts: timing, environment record, markdown output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def spread(values: list[float], digits: int | None = None) -> dict:
    """Median and min-max of repeated measurements (rounded to `digits` when given)."""
    def r(value: float) -> float:
        return value if digits is None else round(value, digits)

    return {"median": r(statistics.median(values)), "min": r(min(values)), "max": r(max(values)), "n": len(values)}


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest of `repeats` runs after one warm-up (seconds)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def environment() -> dict:
    import numpy
    import onnxruntime

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__,
            "providers": onnxruntime.get_available_providers(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def write_results(out: Path, name: str, results: dict, markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2, default=float))
    (out / f"{name}.md").write_text(markdown)


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
