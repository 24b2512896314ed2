"""Peak resident memory of `netorigin predict` per engine and precision, as a user runs it: one fresh process per
case on a slide of realistic size, its peak RSS from the kernel (wait4), interleaved, a new seed per repetition.

    python benchmarks/memory.py (--model FP32.onnx [--int8 INT8.onnx] | --train-cohort CSV) [--demo] [--reps 5]
        [--workdir DIR]

Writes results/memory-predict.{json,md}, and results/memory-train.{json,md} when `train` or `demo` ran: single
long runs whose peak RSS is measured the same way (`--train-cohort` trains fp32 + INT8 with random weights and
accuracy-controlled INT8 into WORKDIR/trained, and `predict` then measures those models). `batch` over hundreds of
cases is benchmarks/soak.py (--workers).

A child's peak RSS on Linux starts from its parent's resident set at fork, so this script stays small: the
slides are written by a child process, never in this one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, spread, table, write_results  # noqa: E402

NETORIGIN = str(Path(sys.executable).with_name("netorigin"))
GOAL_PREDICT_FP32_MB = 700
WRITE_SLIDES = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from common import realistic_slides
realistic_slides(Path(sys.argv[2]))
"""


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one child process; it must succeed."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: nobody reads a pipe while wait4 waits
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{' '.join(args)} failed: {errors.read().decode(errors='replace')}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


def predict_configurations(model: Path, int8: Path | None) -> dict[str, list[str]]:
    out = {"ORT fp32": ["-m", str(model), "--engine", "onnxruntime"]}
    if int8 is not None:
        out["ORT INT8"] = ["-m", str(int8), "--engine", "onnxruntime", "--allow-lower-fidelity"]
    try:
        import openvino  # noqa: F401

        from netorigin.runtime.engines.openvino_session import bf16_available
    except ImportError:
        return out
    out["OpenVINO f32"] = ["-m", str(model), "--engine", "openvino", "--ov-precision", "f32"]
    if int8 is not None:
        out["OpenVINO, the INT8 file"] = ["-m", str(int8), "--engine", "openvino", "--ov-precision", "f32",
                                          "--allow-lower-fidelity"]
    if bf16_available():
        out["OpenVINO bf16"] = ["-m", str(model), "--engine", "openvino", "--ov-precision", "bf16",
                                "--allow-lower-fidelity"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="the fp32 model")
    parser.add_argument("--int8", type=Path, default=None, help="its INT8 variant")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "netorigin-bench")
    parser.add_argument("--train-cohort", type=Path, default=None,
                        help="measure `train` on this slide manifest (fp32 + INT8, random weights) and predict with "
                             "what it wrote")
    parser.add_argument("--demo", action="store_true", help="also measure `netorigin demo`")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    rows = []
    if args.train_cohort is not None:
        trained = args.workdir / "trained"
        mb, seconds = peak_rss_mb([NETORIGIN, "train", str(args.train_cohort), "--weights-kind", "random", "--demo",
                                   "--precision", "int8", "-o", str(trained), "--quiet"])
        rows.append({"run": f"train, fp32 + INT8 with accuracy control ({seconds:.0f} s)", **spread([mb], 1)})
        args.model, args.int8 = trained / "netorigin.onnx", trained / "netorigin-int8.onnx"
    if args.model is None:
        parser.error("give --model or --train-cohort")
    if args.demo:
        with tempfile.TemporaryDirectory() as tmp:
            mb, seconds = peak_rss_mb([NETORIGIN, "demo", "-o", tmp, "--quiet"])
        rows.append({"run": f"demo ({seconds:.0f} s)", **spread([mb], 1)})
    subprocess.run([sys.executable, "-c", WRITE_SLIDES, str(ROOT), str(args.workdir)], check=True)
    slide = args.workdir / "realistic-20x.svs"
    configurations = predict_configurations(args.model, args.int8)
    peaks: dict[str, list[float]] = {name: [] for name in configurations}
    for rep in range(args.reps):
        for name, model_args in configurations.items():
            with tempfile.TemporaryDirectory() as tmp:
                mb, _ = peak_rss_mb([NETORIGIN, "predict", str(slide), "--annotations", str(slide.with_suffix(
                    ".geojson")), *model_args, "--device", "cpu", "--seed", str(rep + 1), "-o", tmp])
            peaks[name].append(mb)
    predict_rows = [{"run": f"predict, {name}", **spread(values, 1)} for name, values in peaks.items()]
    fp32 = peaks["ORT fp32"]
    goal_met = max(fp32) <= GOAL_PREDICT_FP32_MB
    write(args.out, "memory-predict", predict_rows,
          f"`predict` on {slide.name} (20,000 x 16,000 px), {args.reps} repetitions each, interleaved, new seeds. "
          f"Goal: predict fp32 <= {GOAL_PREDICT_FP32_MB} MB: {'met' if goal_met else 'NOT met'}.",
          {"slide": str(slide), "reps": args.reps, "goal_predict_fp32_mb": GOAL_PREDICT_FP32_MB, "goal_met": goal_met})
    if rows:
        write(args.out, "memory-train", rows, "One run each (minutes long).", {})


def write(out: Path, name: str, rows: list[dict], summary: str, extra: dict) -> None:
    md = ("# Peak resident memory (MB), one process per run\n\n" + summary + "\n\n"
          + table(["run", "median", "min", "max", "n"], [[r["run"], r["median"], r["min"], r["max"], r["n"]]
                                                          for r in rows]) + "\n")
    write_results(out, name, {"environment": environment(), "rows": rows} | extra, md)
    print(md)


if __name__ == "__main__":
    main()
