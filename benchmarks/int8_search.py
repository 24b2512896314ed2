"""Accuracy-controlled INT8 (`train --precision int8`) on the demo cohort: the speed / fidelity curve of its search
and the chosen model on each engine that runs it, against ONNX Runtime fp32.

    python benchmarks/int8_search.py --trained DIR --test TEST.csv [--reps 5]

DIR is a `netorigin train … --precision int8` output (its fp32 and INT8 models, split and summary); the cohort is
the one in the summary. Every model is judged on the calibration patients and on the held-out test cases: verdict
flips at every band (each model under its own bands; OpenVINO running the INT8 file under that file's bands),
counting every patient, so stricter than `train`'s check, which skips a patient at a band where its fp32 S lies
within 2e-7 of the band's edge; and max |dS| / fp32 default band width; patches/s at the product's batch
(CPU_BATCH; 32 before 2026-12-07), median
and min-max of `--reps` interleaved repetitions, ratios to ORT fp32 from the same run. Each point of the search's
curve is rebuilt from the summary's ranking (same calibration patches and ranges as `train`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, spread, table, write_results  # noqa: E402
from int8 import session  # noqa: E402

from netorigin.calibration.bands import calibrate_bands  # noqa: E402
from netorigin.export.embeddings import calibration_patches, iter_cohort  # noqa: E402
from netorigin.export.precision import Int8Recipe, to_int8  # noqa: E402
from netorigin.runtime.engines.openvino_session import bf16_available, open_openvino  # noqa: E402
from netorigin.runtime.engines.session import CPU_BATCH, open_session  # noqa: E402
from netorigin.runtime.errors import NetoriginError  # noqa: E402
from netorigin.runtime.model.contract import DECISION_OUTPUT, INPUT_NAME, load_contract  # noqa: E402
from netorigin.runtime.slide.verdict import case_score, verdict_from_sum  # noqa: E402

BATCH = CPU_BATCH  # the product's batch
GOAL_SPEEDUP, GOAL_RATIO = 3.0, 0.01


def case_sums(run, cases) -> list[tuple[float, int, int]]:
    """(S, votes for small intestine, patches) per case; `run(patches)` gives per-patch decisions."""
    out = []
    for case in cases:
        out.append(case_score(np.concatenate([run(case.pixels[i:i + BATCH])
                                              for i in range(0, len(case.pixels), BATCH)])))
    return out


def flips(sums, bands, ref_sums, ref_bands) -> int:
    """Verdict changes at every band, each side under its own band of the same confidence."""
    return sum(verdict_from_sum(*a, (b.lower, b.upper)) != verdict_from_sum(*r, (rb.lower, rb.upper))
               for b, rb in zip(bands, ref_bands) for a, r in zip(sums, ref_sums))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trained", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True, help="held-out slide manifest")
    parser.add_argument("--name", default="netorigin")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--results", default="int8-search", help="results file name (an --int8-nncf run: int8-nncf)")
    args = parser.parse_args()
    summary = json.loads((args.trained / f"{args.name}-train.json").read_text())
    split = json.loads((args.trained / f"{args.name}-split.json").read_text())
    cohort = Path(summary["int8_calibration"]["manifest"])  # the training cohort, as train recorded it
    seed = summary["sampling"]["seed"]
    search = summary["int8_calibration"].get("search")  # None: NNCF made the INT8 file (`train --int8-nncf`)
    nncf = summary["int8_calibration"].get("nncf")
    fp32_contract = load_contract(args.trained / f"{args.name}.onnx")
    int8_contract = load_contract(args.trained / f"{args.name}-int8.onnx")
    cal_cases = list(iter_cohort(cohort, 100, seed, patients=set(split["calibration"])))
    test_cases = list(iter_cohort(args.test, 100, seed))
    labels = [c.label for c in cal_cases]
    speed_patches = np.concatenate([c.pixels for c in test_cases])[:BATCH * 3]

    def own_bands(sums):
        return calibrate_bands([s for (s, _, _), lab in zip(sums, labels) if lab < 2],
                               [s for (s, _, _), lab in zip(sums, labels) if lab == 2]).bands

    fp32_session = open_session(fp32_contract, "cpu")
    runners = {"ORT fp32": lambda p: fp32_session.run(p)[0]}
    bands = {"ORT fp32": fp32_contract.bands}
    int8_session = open_session(int8_contract, "cpu")
    runners["ORT INT8 (chosen)"] = lambda p: int8_session.run(p)[0]
    bands["ORT INT8 (chosen)"] = int8_contract.bands
    try:
        ov_int8 = open_openvino(int8_contract, "f32")
        runners["OpenVINO, the INT8 file"] = lambda p: ov_int8.run(p)[0]
        bands["OpenVINO, the INT8 file"] = int8_contract.bands
        if bf16_available():
            ov_bf16 = open_openvino(fp32_contract, "bf16")
            runners["OpenVINO bf16, the fp32 file"] = lambda p: ov_bf16.run(p)[0]
            bands["OpenVINO bf16, the fp32 file"] = fp32_contract.bands
    except NetoriginError:  # OpenVINO not installed: ONNX Runtime's rows only
        pass
    fp32 = onnx.load(str(fp32_contract.path))
    patches, _ = calibration_patches(cohort, summary["int8_calibration"]["patches"], seed, patients=set(split["fit"]))
    order = tuple(row["node"].split(" ")[0] for row in search["ranking"]) if search else ()
    calibration = summary["int8_calibration"]
    for point in sorted(search["curve"] if search else [], key=lambda p: p["quantised"]):
        recipe = Int8Recipe(tuple(calibration["keep_float"]), calibration["float_stem"],
                            kept_nodes=order[point["quantised"]:])  # cheapest first: the rest stay float32
        curve_session = session(to_int8(fp32, patches, recipe))
        runners[f"search: {point['quantised']} of {len(order)} nodes INT8"] = (
            lambda s: lambda p: s.run([DECISION_OUTPUT], {INPUT_NAME: p})[0])(curve_session)
    sums = {name: (case_sums(run, cal_cases), case_sums(run, test_cases)) for name, run in runners.items()}
    ref_cal, ref_test = sums["ORT fp32"]
    width = fp32_contract.band(None).upper - fp32_contract.band(None).lower
    rows: dict[str, dict] = {}
    for name, (cal, test) in sums.items():
        own = bands.get(name) or own_bands(cal)  # a curve point's bands: from its own calibration decisions
        rows[name] = {"calibration_flips": flips(cal, own, ref_cal, fp32_contract.bands),
                      "calibration_max_dS_over_width": max(abs(a[0] - b[0]) for a, b in zip(cal, ref_cal)) / width,
                      "test_flips": flips(test, own, ref_test, fp32_contract.bands),
                      "test_max_dS_over_width": max(abs(a[0] - b[0]) for a, b in zip(test, ref_test)) / width}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(speed_patches[:BATCH])  # warm-up
    for _ in range(args.reps):
        for name, run in runners.items():
            t = time.perf_counter()
            for i in range(0, len(speed_patches), BATCH):
                run(speed_patches[i:i + BATCH])
            times[name].append(len(speed_patches) / (time.perf_counter() - t))
    reference = statistics.median(times["ORT fp32"])
    table_rows = []
    for name, row in rows.items():
        row["patches_per_s"] = spread(times[name], 1)
        row["vs_ort_fp32"] = round(row["patches_per_s"]["median"] / reference, 2)
        row["passed"] = row["calibration_flips"] == 0 and row["calibration_max_dS_over_width"] <= GOAL_RATIO
        row["goal_met"] = row["passed"] and row["test_flips"] == 0 and row["test_max_dS_over_width"] <= GOAL_RATIO \
            and row["vs_ort_fp32"] >= GOAL_SPEEDUP
        p = row["patches_per_s"]
        table_rows.append([name, f"{p['median']} ({p['min']}–{p['max']})", f"{row['vs_ort_fp32']}×",
                           row["calibration_flips"], f"{row['calibration_max_dS_over_width']:.4f}",
                           row["test_flips"], f"{row['test_max_dS_over_width']:.4f}"])
    env = environment()
    results = {"environment": env, "batch": BATCH, "reps": args.reps, "calibration_patients": len(cal_cases),
               "test_cases": len(test_cases), "rows": rows,
               "made_by": {"nncf": nncf} if nncf else {"kept_float": search["kept_float"],
                                                       "search_passed": search["passed"]}}
    made_by = (f"NNCF's accuracy control left {nncf['int8_nodes']} nodes in INT8; its check on OpenVINO "
               f"{'passed' if nncf['passed'] else 'failed'}." if nncf else
               f"The search quantised {search['quantised']} of {len(search['ranking'])} nodes and kept "
               f"{', '.join(search['kept_float']) or 'none'} in float32; its check "
               f"{'passed' if search['passed'] else 'failed'}.")
    markdown = "\n".join([
        f"# Accuracy-controlled INT8 on the demo cohort ({env['cpu']}, {env['cores']} cores)", "",
        f"{len(cal_cases)} calibration patients, {len(test_cases)} held-out test cases, 100 patches each; flips at "
        f"every band, each model under its own bands, every patient counted (train's check skips those within 2e-7 "
        f"of a band edge); patches/s at batch {BATCH}, {args.reps} interleaved repetitions. {made_by}",
        "", table(["model / engine", "patches/s (min–max)", "vs ORT fp32", "cal. flips", "cal. max |dS|/width",
                   "test flips", "test max |dS|/width"], table_rows), "",
        f"Goal (#26): >= {GOAL_SPEEDUP}× ORT fp32 at 0 flips and max |dS| / band width <= {GOAL_RATIO} on the "
        "calibration patients and the held-out cases."])
    write_results(ROOT / "results", args.results, results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
