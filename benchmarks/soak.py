"""Soak run: many cases in one batch with the resident set sampled; it must stay flat.

    python benchmarks/soak.py [--cases 500] [--workers 1] [--model MODEL.onnx] [--workdir DIR]

Without --model a small-trunk model (100 patches per case) is exported, so the run measures the
runtime's own memory behaviour (slide handles, tile caches, regions, reads, session arena, reports)
in minutes; pass the demo or a real model to soak the full ResNet50. Flat means: after the first 20 cases, the
resident set never grows more than 5 % above what it was at case 20.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, table, write_results  # noqa: E402

from netorigin.runtime.batch.slides import read_manifest, run_batch  # noqa: E402

WARM_CASES = 20  # the resident set may grow while the first cases fill caches and the session's arena
FLAT_PCT = 5.0

BUILD_INPUTS = """
import sys
from pathlib import Path
from netorigin.export.demo import SMALL
from netorigin.export.synthetic import make_cohort
from netorigin.export.smoke import build_smoke_model, tiny_embedder
embedder, info = tiny_embedder()
build_smoke_model(Path(sys.argv[1]), embedder, info, patches_per_case=100)
make_cohort(Path(sys.argv[2]), SMALL.test | {"pancreas": 2, "small_intestine": 2}, seed=11, mpps=(0.5, 0.25),
            size_um=SMALL.size_um)
"""
from netorigin.runtime.slide.predictor import Predictor  # noqa: E402


def make_inputs(workdir: Path, cases: int) -> tuple[Path, Path]:
    """Model and slides are made in a child process, so the soak's own RSS is the runtime's alone."""
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "soak-model.onnx"
    if not model.exists():
        subprocess.run([sys.executable, "-c", BUILD_INPUTS, str(model), str(workdir / "cohort")], check=True)
    source = workdir / "cohort" / "manifest.csv"
    rows = list(csv.DictReader(source.open()))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["case"], []).append(row)
    keys = list(groups)
    manifest = workdir / f"soak-{cases}.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "slide", "annotations", "specimen"])
        writer.writeheader()
        for i in range(cases):
            for row in groups[keys[i % len(keys)]]:
                writer.writerow({"case": f"soak{i:04d}", "slide": f"cohort/{row['slide']}",
                                 "annotations": f"cohort/{row['annotations']}", "specimen": row["specimen"]})
    return model, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1, help="cases at a time (threads sharing one session)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "netorigin-soak")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    model, manifest = make_inputs(args.workdir, args.cases)
    model = args.model or model
    process = psutil.Process(os.getpid())
    samples: list[tuple[float, int, float]] = []  # (seconds, cases done, RSS MB)
    done = [0]
    stop = threading.Event()
    start = time.perf_counter()

    def sampler() -> None:
        while not stop.wait(0.5):
            samples.append((time.perf_counter() - start, done[0], process.memory_info().rss / 2**20))

    predictor = Predictor(model, device="cpu")
    cases = read_manifest(manifest)
    out = Path(tempfile.mkdtemp(prefix="netorigin-soak-out-"))
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()

    def on_done(_outcome) -> None:
        done[0] += 1

    outcomes = run_batch(predictor, cases, out, workers=args.workers, on_done=on_done)
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - start
    per_block = []
    block = max(1, args.cases // 10)
    for k in range(block, args.cases + 1, block):
        rss = [s[2] for s in samples if k - block < s[1] <= k]
        if rss:
            per_block.append([k, round(max(rss), 1)])
    warm = [s[2] for s in samples if s[1] <= max(10, block)]
    last = [s[2] for s in samples if s[1] >= args.cases - block]
    at_20 = max((s[2] for s in samples if s[1] <= WARM_CASES), default=None)
    later = [s[2] for s in samples if s[1] > WARM_CASES]
    growth = 100 * (max(later) - at_20) / at_20 if at_20 and later else None
    result = {"environment": environment(), "model": str(model), "cases": args.cases, "workers": args.workers,
              "rss_at_20_mb": None if at_20 is None else round(at_20, 1),
              "growth_after_20_pct": None if growth is None else round(growth, 2),
              "flat": growth is not None and growth <= FLAT_PCT,
              "ok": sum(o.status == "ok" for o in outcomes), "failed": sum(o.status != "ok" for o in outcomes),
              "seconds": round(elapsed, 1), "cases_per_hour": round(3600 * args.cases / elapsed),
              "rss_start_mb": round(max(warm), 1) if warm else None,
              "rss_end_mb": round(max(last), 1) if last else None,
              "rss_max_mb": round(max(s[2] for s in samples), 1), "rss_by_cases": per_block,
              "open_files_end": len(process.open_files())}
    md = (f"# Soak: {args.cases} cases in one batch, {args.workers} at a time\n\n"
          f"{result['ok']} ok, {result['failed']} failed, "
          f"{result['seconds']} s ({result['cases_per_hour']} cases/hour), RSS start {result['rss_start_mb']} MB, "
          f"end {result['rss_end_mb']} MB, max {result['rss_max_mb']} MB, open files at end "
          f"{result['open_files_end']}; after case {WARM_CASES} it grew {result['growth_after_20_pct']} % "
          f"({'flat' if result['flat'] else 'NOT flat'}: goal <= {FLAT_PCT} %).\n\n"
          + table(["cases done", "max RSS MB"], per_block) + "\n")
    write_results(args.out, f"soak-{args.cases}" + (f"-w{args.workers}" if args.workers > 1 else ""), result, md)
    print(md)


if __name__ == "__main__":
    main()
