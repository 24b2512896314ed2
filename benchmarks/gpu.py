"""GPU figures in one run (benchmarks/gpu.sh runs it on the device machine; the tests dry-run it on the CPU).

    python benchmarks/gpu.py -m FP32.onnx [-m FP16.onnx] --manifest COHORT.csv --out gpu.json [--device cuda]
        [--reps 5] [--batches 32 128 256 512] [--workers 1 4 8 16] [--readers 4] [--repeat 4]

1. Throughput (`netorigin bench`'s measurement): each model on ONNX Runtime's CUDA provider (IO binding, no
   padding, warmed up) beside the fp32 model on the CPU provider, interleaved: patches/s at each batch on the first
   case's own patches, one case open -> verdict, verdicts and sums on new seeds against the CPU.
2. Parity on the cohort: every case on the CPU (fp32, the reference) and on the GPU (each model, each under its own
   bands): verdict flips and max |dS| / the reference's band width.
3. Cases/s end to end: `batch` over the cohort repeated `--repeat` times (new case ids), `--workers` cases at a
   time sharing one GPU session, each reading with `--readers` threads, a new seed per repetition.
4. The TensorRT provider, where ONNX Runtime lists it: whether a session really starts on it.

`--device cpu` plays the GPU's part with the CPU provider: the same code path, for the dry run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import case_fidelity, environment  # noqa: E402

from netorigin.runtime.batch.slides import BatchCase, read_manifest, run_batch  # noqa: E402
from netorigin.runtime.engines.session import CUDA, ONNXRUNTIME, installed_runtime, onnxruntime  # noqa: E402
from netorigin.runtime.ops import bench  # noqa: E402
from netorigin.runtime.slide.predictor import Predictor  # noqa: E402

TENSORRT = "TensorrtExecutionProvider"


def host() -> dict:
    """The benchmarks' environment record, with the onnxruntime distribution and the GPU PyTorch sees."""
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = {"name": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}
    except ImportError:
        pass
    return environment() | {"onnxruntime_distribution": installed_runtime(), "gpu": gpu}


def throughput(models: list[str], manifest: list[BatchCase], device: str, batches: list[int], reps: int,
               readers: int) -> dict:
    """The fp32 model on the CPU (the reference) and every model on `device`, on ONNX Runtime, interleaved."""
    rows = bench.open_configurations(models, device="auto" if device == "cuda" else "cpu", batches=batches,
                                     read_workers=readers)
    first = rows[0].configuration.contract
    kept = [row for row in rows if row.configuration.engine == ONNXRUNTIME
            and (row.configuration.device == device or row.configuration.contract is first)]
    if device == "cuda" and not any(row.predictor and row.predictor.provider == CUDA for row in kept):
        raise SystemExit("no configuration started on CUDA: " + "; ".join(str(row.failed) for row in kept))
    return bench.measure(kept, manifest[0].slides[0], reps)


def parity(models: list[str], cases: list[BatchCase], device: str, readers: int, seed: int) -> list[dict]:
    """Each model on `device` against the fp32 model on the CPU, case by case on the same seed."""
    def predict(predictor: Predictor) -> list:
        return [predictor.predict_case(case.slides, case_id=case.case_id) for case in cases]

    reference = Predictor(models[0], device="cpu", seed=seed, read_workers=readers)
    expected = predict(reference)
    width = reference.band.upper - reference.band.lower if reference.band else None
    out = []
    for model in models:
        predictor = Predictor(model, device=device, seed=seed, read_workers=readers, allow_lower_fidelity=True)
        got = predict(predictor)
        flips, delta = case_fidelity(got, expected)
        out.append({"model": Path(model).name, "precision": predictor.contract.precision,
                    "provider": predictor.provider, "cases": len(cases), "verdict_flips": flips,
                    "max_abs_dS": delta, "max_abs_dS_over_band_width": None if width is None else delta / width,
                    "verdicts": [r.verdict.verdict for r in got],
                    "reference_verdicts": [r.verdict.verdict for r in expected]})
    return out


def cases_per_s(models: list[str], cases: list[BatchCase], device: str, workers: list[int], readers: int,
                repeat: int, reps: int, seed: int) -> list[dict]:
    """`batch` over the cohort repeated, per model and worker count; a new seed per repetition."""
    many = [replace(case, case_id=f"{case.case_id}-r{k}") for k in range(repeat) for case in cases]
    out = []
    for model in models:
        predictor = Predictor(model, device=device, read_workers=readers, allow_lower_fidelity=True)
        rates: dict[int, list[float]] = {w: [] for w in workers}
        for rep in range(reps):
            for count in workers:  # interleaved: each worker count meets the same machine state
                run = predictor.for_run(seed + rep, None, predictor.rules, readers)
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    outcomes = run_batch(run, many, Path(tmp), workers=count)
                    seconds = time.perf_counter() - start
                failed = [o for o in outcomes if o.status != "ok"]
                if failed:
                    raise SystemExit(f"{len(failed)} cases failed: {failed[0].case_id}: {failed[0].reason}")
                rates[count].append(len(many) / seconds)
        out.append({"model": Path(model).name, "precision": predictor.contract.precision,
                    "provider": predictor.provider, "cases": len(many), "readers_per_case": readers,
                    "cases_per_s": {str(w): bench.spread(r, 2) for w, r in rates.items()}})
    return out


def tensorrt(model: str) -> dict:
    """Whether a session starts on TensorRT (ONNX Runtime falls back silently when its libraries are missing)."""
    ort = onnxruntime()
    if TENSORRT not in ort.get_available_providers():
        return {"listed": False}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=[TENSORRT, CUDA])
    except Exception as exc:  # onnxruntime's exceptions share no base class
        return {"listed": True, "started": False, "why": str(exc).splitlines()[0]}
    ran = session.get_providers()[0]
    return {"listed": True, "started": ran == TENSORRT, "ran": ran}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", action="append", required=True, help="the fp32 model first")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 256, 512])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    cases = read_manifest(args.manifest)
    started = time.perf_counter()
    record: dict = {"host": host(), "device": args.device, "models": [Path(m).name for m in args.model],
                    "cohort_cases": len(cases), "seconds": {}}

    def stage(name: str, measure) -> None:
        t = time.perf_counter()
        record[name] = measure()
        record["seconds"][name] = round(time.perf_counter() - t, 1)
        print(f"[gpu] {name} done ({record['seconds'][name]} s)", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))  # what was measured survives a later stage's failure

    stage("throughput", lambda: throughput(args.model, cases, args.device, args.batches, args.reps, args.readers))
    stage("parity", lambda: parity(args.model, cases, args.device, args.readers, args.seed))
    stage("cases_per_s", lambda: cases_per_s(args.model, cases, args.device, args.workers, args.readers,
                                             args.repeat, args.reps, args.seed))
    stage("tensorrt", lambda: tensorrt(args.model[-1]))
    record["seconds"]["total"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(record, indent=2))
    for row in record["throughput"]["configurations"]:
        if row.get("started"):
            best = row["patches_per_s"][str(row["best_batch"])]
            print(f"{row['configuration']}: {best['median']} patches/s at batch {row['best_batch']}, "
                  f"case {row['case_open_to_verdict_s']['median']} s")
    for row in record["parity"]:
        print(f"parity {row['model']} on {row['provider']}: {row['verdict_flips']} flips of {row['cases']}, "
              f"max |dS|/width {row['max_abs_dS_over_band_width']}")
    for row in record["cases_per_s"]:
        print(f"cases/s {row['model']}: " + ", ".join(f"{w} workers {s['median']}"
                                                       for w, s in row["cases_per_s"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
