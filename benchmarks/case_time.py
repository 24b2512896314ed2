"""One case, open -> verdict, against reading alone and inference alone on the same patches, on slides of
realistic size at 20x and 40x.

    python benchmarks/case_time.py --model MODEL.onnx [--reps 5] [--workdir DIR]

Writes two Aperio-style slides once (JPEG tiles, pyramid 1 / 4 / 16, 20,000 x 16,000 px at level 0): 10 x 8 mm at
20x (0.5 um/px) and 5 x 4 mm at 40x (0.25 um/px), each with a QuPath tumour annotation. Then per repetition and
slide, with a new seed and new slide handles every time, interleaved:

- read: the runtime's own sampling of the case's patches alone on 2 threads (open, annotations, reads, resize),
  wall and CPU seconds;
- inference: the engine alone on those very patches at the product's batch (the session's), ONNX Runtime threads
  spinning and not (wall), and its CPU seconds without spinning (spinning burns CPU while waiting);
- case: `Predictor.predict_case`, open -> verdict, for each configuration (ONNX Runtime threads spinning or not,
  read threads).

Reports the median and min-max over repetitions and each configuration's case / inference ratio against the engine
alone with the same spinning setting (the goal: a case within 1.1x of its inference alone, reading hidden behind
it). Goals are stated, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import REALISTIC_SLIDES, environment, read_patches, realistic_slides, spread, table, write_results  # noqa: E402,E501

from netorigin.runtime.engines.session import open_session  # noqa: E402
from netorigin.runtime.slide.predictor import Predictor  # noqa: E402

INFERENCE = {True: "inference (spinning)", False: "inference (no spinning)"}
MEASURES = ("read (2 threads)", "read CPU, core-seconds", *INFERENCE.values(),
            "inference CPU (no spinning), core-seconds")
CONFIGS = (("spinning, 4 read threads", True, 4), ("no spinning, 4 read threads", False, 4),
           ("no spinning, 2 read threads", False, 2))
SPINNING_OF = {label: spinning for label, spinning, _ in CONFIGS}


def infer(session, pixels: np.ndarray) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of the engine alone on the patches."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(pixels), session.batch_size):
        session.run(pixels[i:i + session.batch_size])
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("netorigin-bench"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    slides = realistic_slides(args.workdir)
    written_s = time.perf_counter() - start
    base = Predictor(args.model, device="cpu", inference=False)  # each run gets one of the sessions below
    n = base.contract.patches_per_case
    sessions = {spinning: open_session(base.contract, "cpu", spinning=spinning) for spinning in (True, False)}
    for session in sessions.values():  # warm-up: first runs allocate
        session.run(np.zeros((session.batch_size, 224, 224, 3), np.uint8))
    raw: dict = {name: {k: [] for k in (*MEASURES, *(c[0] for c in CONFIGS))} for name in slides}
    for rep in range(args.reps):
        for name, path in slides.items():
            seed = 1000 * rep + 7
            cpu = time.process_time()
            pixels, read_s = read_patches(path, n, base.geometry, seed, 2)
            raw[name]["read CPU, core-seconds"].append(time.process_time() - cpu)
            raw[name]["read (2 threads)"].append(read_s)
            raw[name][INFERENCE[True]].append(infer(sessions[True], pixels)[0])
            wall, cpu_s = infer(sessions[False], pixels)
            raw[name][INFERENCE[False]].append(wall)
            raw[name]["inference CPU (no spinning), core-seconds"].append(cpu_s)
            for label, spinning, workers in CONFIGS:
                predictor = base.for_run(seed, None, base.rules, workers)
                predictor.session = sessions[spinning]
                t = time.perf_counter()
                predictor.predict_case([path], [path.with_suffix(".geojson")])
                raw[name][label].append(time.perf_counter() - t)
    results = {"environment": environment(), "model": str(args.model), "patches_per_case": n, "reps": args.reps,
               "slides": {name: {"mpp": mpp, "size_um": size_um, "level0_px": [round(size_um[0] / mpp),
                                                                             round(size_um[1] / mpp)]}
                          for name, (mpp, size_um) in REALISTIC_SLIDES.items()},
               "slides_written_s": round(written_s, 1), "seconds": {}, "case_over_inference": {}}
    rows = []
    for name in slides:
        results["seconds"][name] = {k: spread(v) for k, v in raw[name].items()}
        for label, values in raw[name].items():
            ratio = None
            if label in SPINNING_OF:  # against the engine alone with the same spinning setting
                inference = raw[name][INFERENCE[SPINNING_OF[label]]]
                ratio = spread([c / i for c, i in zip(values, inference)])
                results["case_over_inference"].setdefault(name, {})[label] = ratio
            s = results["seconds"][name][label]
            rows.append([name, label, f"{s['median']:.2f}", f"{s['min']:.2f}–{s['max']:.2f}",
                         "" if ratio is None else f"{ratio['median']:.2f} ({ratio['min']:.2f}–{ratio['max']:.2f})"])
    markdown = "\n".join([
        f"# One case vs its inference alone ({args.reps} repetitions, new seed and handles each, "
        f"{n} patches, {results['environment']['cpu']}, {results['environment']['cores']} cores)", "",
        table(["slide", "what", "median s", "min–max s", "case / inference (median, min–max)"], rows), "",
        "CPU rows: process CPU time over all threads while reading alone / the engine ran alone.",
        "Goal: case / inference ≤ 1.1 at 20x and 40x."])
    write_results(ROOT / "results", "case-time", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
