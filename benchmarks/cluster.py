"""Scale-out on this machine: batch cases/hour and evaluation folds, locally and on a Dask LocalCluster of 1 and
2 worker processes, side by side in one run.

    python benchmarks/cluster.py --model MODEL.onnx --manifest CASES.csv [--cases 4 --repeats 5 --folds 4]

Batch: the same cases per repetition (a new output folder and a new seed each time, so every slide handle is
cold), median and min-max of `--repeats`, after one warm-up that opens every worker's engine (a new seed only
makes a light copy of it, as in production); local = today's `netorigin batch` (one process, ONNX Runtime on
all cores, its engine opened before timing); dask-1 = one worker process with the same threads (the
difference is the engine's overhead per case); dask-2 = two worker processes with one ONNX Runtime thread
each. Evaluation: the first `--folds` folds of the binary leave-one-out on a synthetic cohort of the paper's
size (protocols_scale.py), on the same three set-ups, the embeddings scattered once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, spread, table, write_results  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from protocols_scale import synthetic  # noqa: E402

from netorigin.calibration.protocols import binary_fold  # noqa: E402
from netorigin.export.heads import fit_scorer  # noqa: E402
from netorigin.runtime.batch.cluster import DaskMapper, LocalMapper  # noqa: E402
from netorigin.runtime.batch.slides import read_manifest, run_batch  # noqa: E402
from netorigin.runtime.slide.predictor import Predictor  # noqa: E402

SETUPS = (("local", 0, None), ("dask-1", 1, None), ("dask-2", 2, 1))  # name, worker processes, ORT threads


def batch_times(model: Path, cases, workers: int, threads: int | None, repeats: int, work: Path) -> list[float]:
    """Seconds per repetition for all `cases` (new folder and seed each time)."""
    times = []
    client = None
    cluster = None
    if workers:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    try:
        for rep in range(repeats + 1):  # the first run warms every worker's session; not counted
            predictor = Predictor(model, device="cpu", seed=rep, threads=threads, inference=not workers)
            out = work / f"{workers}-{threads}-{rep}"
            t = time.perf_counter()
            outcomes = run_batch(predictor, cases, out, mapper=DaskMapper(client) if client else None)
            elapsed = time.perf_counter() - t
            if {o.status for o in outcomes} != {"ok"}:
                raise SystemExit(f"a case failed: {[o.reason for o in outcomes if o.reason]}")
            if rep:
                times.append(elapsed)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return times


def fold_times(emb, folds: int, workers: int) -> float:
    """Seconds for the first `folds` binary leave-one-out folds."""
    patients = [(p, lab) for p, lab in emb.patient_table() if lab < 2][:folds]
    fit = partial(fit_scorer, "reference")
    if not workers:
        t = time.perf_counter()
        LocalMapper()(binary_fold, patients, emb=emb, fit=fit, seed=0)
        return time.perf_counter() - t
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        t = time.perf_counter()
        DaskMapper(client)(binary_fold, patients, scatter=("emb",), emb=emb, fit=fit, seed=0)
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True, help="batch manifest of realistic cases")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    cases = read_manifest(args.manifest)[: args.cases]
    work = Path(tempfile.mkdtemp(prefix="netorigin-cluster-"))
    result = {"environment": environment(), "cases_per_repetition": len(cases), "batch": {}, "evaluation": {}}
    for name, workers, threads in SETUPS:
        seconds = batch_times(args.model, cases, workers, threads, args.repeats, work)
        per_case = [s / len(cases) for s in seconds]
        result["batch"][name] = {"seconds_per_case": spread(per_case, 3),
                                 "cases_per_hour": round(3600 / statistics.median(per_case), 1)}
        print(name, result["batch"][name], flush=True)
    local, one = (result["batch"][n]["seconds_per_case"]["median"] for n in ("local", "dask-1"))
    result["engine_overhead_s_per_case"] = round(one - local, 3)
    emb = synthetic(40, 51, 8, 100)
    for name, workers, _ in SETUPS:
        seconds = fold_times(emb, args.folds, workers)
        result["evaluation"][name] = {"folds": args.folds, "seconds": round(seconds, 1),
                                      "estimated_full_binary_loo_s": round(seconds / args.folds * 91, 0)}
        print(name, result["evaluation"][name], flush=True)
    rows = [[n, result["batch"][n]["cases_per_hour"], result["batch"][n]["seconds_per_case"]["median"],
             f"{result['batch'][n]['seconds_per_case']['min']}-{result['batch'][n]['seconds_per_case']['max']}",
             result["evaluation"][n]["seconds"], result["evaluation"][n]["estimated_full_binary_loo_s"]]
            for n, _, _ in SETUPS]
    text = (f"# Scale-out on one machine ({result['environment']['cores']} cores)\n\n"
            f"Batch: {len(cases)} cases of 100 patches per repetition, {args.repeats} repetitions (new seed and "
            f"folder each), after one warm-up. Evaluation: first {args.folds} of 91 binary leave-one-out folds on "
            "the paper-size synthetic cohort (99 patients x 100 patches x 2048).\n\n"
            + table(["set-up", "cases/hour", "s/case median", "s/case min-max", f"{args.folds} folds s",
                     "full binary LOO est. s"], rows)
            + f"\n\nEngine overhead per case (dask-1 - local, medians): {result['engine_overhead_s_per_case']} s.\n")
    write_results(args.out, "cluster", result, text)
    print(text)


if __name__ == "__main__":
    main()
