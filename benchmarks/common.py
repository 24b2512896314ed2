"""Helpers shared by the benchmark scripts: timing, environment record, markdown output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from netorigin.runtime.ops.bench import spread  # noqa: F401  (the one median / min-max; benchmarks import it from here)

REALISTIC_SLIDES = {"20x": (0.5, (10_000, 8_000)), "40x": (0.25, (5_000, 4_000))}  # um/px, size in um


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    """Seconds of each of `reps` runs after one warm-up run (first runs allocate)."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def realistic_slides(workdir: Path) -> dict[str, Path]:
    """Two Aperio-style slides of realistic size, written once: JPEG tiles, pyramid 1 / 4 / 16, 20,000 x 16,000 px
    at level 0: 10 x 8 mm at 20x (0.5 um/px) and 5 x 4 mm at 40x (0.25 um/px), each with a QuPath tumour
    annotation."""
    import numpy as np

    from netorigin.export.synthetic import make_slide, patient_texture

    workdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for index, (name, (mpp, size_um)) in enumerate(REALISTIC_SLIDES.items()):
        path = workdir / f"realistic-{name}.svs"
        if not path.exists():
            rng = np.random.default_rng(100 + index)
            make_slide(path, "pancreas", patient_texture("pancreas", rng), rng, mpp=mpp, size_um=size_um)
        paths[name] = path
    return paths


def read_patches(path: Path | str, n: int, geometry, seed: int, workers: int, level: int | None = None,
                 annotations: Path | None = None):
    """The runtime's sampling of one slide on a new handle: (uint8 patches, seconds from open to the last resized
    patch). Annotations: `annotations`, else the slide's path with .geojson."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from netorigin.runtime.slide.regions import load_annotations
    from netorigin.runtime.slide.sampling import plan_reads, sample_slide
    from netorigin.runtime.slide.slide import Slide

    start = time.perf_counter()
    with Slide(path) as slide, ThreadPoolExecutor(workers) as pool:
        regions = load_annotations(annotations or Path(path).with_suffix(".geojson"), slide)
        plan = plan_reads(slide, geometry, level)
        pixels = [p.pixels for p in sample_slide(slide, regions, n, geometry, seed, 0, pool, plan)]
    return np.stack(pixels), time.perf_counter() - start


def case_fidelity(results: list, reference: list) -> tuple[int, float]:
    """Verdict flips and max |dS| of one engine's or variant's CaseResults against the reference's, case by case."""
    flips = sum(a.verdict.verdict != b.verdict.verdict for a, b in zip(results, reference))
    return flips, max(abs(a.verdict.patient_sum - b.verdict.patient_sum) for a, b in zip(results, reference))


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


# A child's peak RSS (wait4's ru_maxrss) starts from the resident set of the process that forked it, so a large
# benchmark process (torch, models, cohorts) measures its children through this small launcher.
_LAUNCHER = """
import os, subprocess, sys, tempfile
with tempfile.TemporaryFile() as errors:  # a file, not a pipe: nobody reads a pipe while wait4 waits
    child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=errors)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        errors.seek(0)
        sys.exit(errors.read().decode(errors="replace"))
print(usage.ru_maxrss / 1024)
"""


def child_peak_rss_mb(args: list[str]) -> float:
    """Peak RSS in MB of the command `args`, run from a launcher of a few MB; it must succeed."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    return float(done.stdout)
