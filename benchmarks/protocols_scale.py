"""Wall time of the evaluation protocols on a synthetic cohort of the paper's size: today's settings against the
product's, side by side in one run.

    python benchmarks/protocols_scale.py [--folds 6] [--workers 2] [--full]

99 patients x 100 patches x 2048 dims by default; embeddings are gamma-distributed and non-negative like
ResNet50 features, with a class shift on 200 dimensions. The first `--folds` folds of each protocol run three
ways, interleaved per protocol: before (one process, libsvm's default 200 MB kernel cache, BLAS on every core: what
`evaluate` did), one process as the product runs it (512 MB cache, one BLAS thread), and `--workers` worker
processes (`evaluate --workers`). Outcomes are compared with the product's one-process way (the workers must equal
it bit for bit; before, BLAS's thread count moved S in the last bits: max |dS| per way). The workers' wall time
includes sending the embeddings to them once. Each fold is one repetition (median and min-max of the per-fold
seconds in one process); the whole protocol's time is projected from the mean fold (folds are equal in size).
`--full` times the whole protocols once instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, spread, table, write_results  # noqa: E402

from netorigin.calibration.embeddings import Embeddings  # noqa: E402
from netorigin.calibration.protocols import (  # noqa: E402
    binary_fold,
    binary_folds,
    binary_loo,
    extended_fold,
    extended_folds,
    extended_loo,
)
from netorigin.export import heads  # noqa: E402
from netorigin.export.heads import fit_scorer  # noqa: E402
from netorigin.runtime.batch.cluster import LocalMapper, mapper_for  # noqa: E402

REFERENCE = partial(fit_scorer, "reference")
PRODUCT_CACHE_MB, PRODUCT_THREADS = heads.SVC_CACHE_MB, heads.one_blas_thread


def synthetic(n_p: int, n_si: int, n_other: int, patches: int, seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], [n_p, n_si, n_other])
    rows = []
    for lab in labels:
        x = rng.gamma(1.5, 0.3, (patches, 2048)).astype(np.float32)
        x[:, :200] += {0: 0.0, 1: 0.08, 2: rng.uniform(0.0, 0.08)}[int(lab)]
        rows.append(x)
    n = len(labels) * patches
    patients = np.repeat([f"p{i:03d}" for i in range(len(labels))], patches)
    return Embeddings(np.concatenate(rows), patients, np.repeat(labels, patches), np.array(["A"] * n),
                      np.array(["s"] * n), np.arange(n).astype(str))


def run_folds(fold, folds: list, emb: Embeddings, mapper, **shared) -> tuple[list, list[float], float]:
    """Outcomes, per-fold seconds (one process only: finish minus previous finish) and wall seconds."""
    done: list[float] = []
    start = time.perf_counter()
    outcomes = mapper(fold, folds, on_done=lambda _: done.append(time.perf_counter()), scatter=("emb",), emb=emb,
                      fit=REFERENCE, seed=0, **shared)
    wall = time.perf_counter() - start
    per_fold = list(np.diff([start, *done])) if isinstance(mapper, LocalMapper) else []
    return outcomes, per_fold, wall


def compare(name: str, fold, folds: list, n_all: int, emb: Embeddings, workers: int, **shared) -> dict:
    ways = {}
    # the fold as `evaluate` ran it before: libsvm's default cache, BLAS on every core
    heads.SVC_CACHE_MB, heads.one_blas_thread = 200, nullcontext
    try:
        ways["before: 1 process, 200 MB kernel cache, BLAS on all cores"] = run_folds(fold, folds, emb,
                                                                                      LocalMapper(), **shared)
    finally:
        heads.SVC_CACHE_MB, heads.one_blas_thread = PRODUCT_CACHE_MB, PRODUCT_THREADS
    ways[f"1 process, {PRODUCT_CACHE_MB} MB cache, 1 BLAS thread"] = run_folds(fold, folds, emb, LocalMapper(),
                                                                               **shared)
    with mapper_for(workers=workers) as mapper:
        ways[f"{workers} worker processes, {PRODUCT_CACHE_MB} MB cache"] = run_folds(fold, folds, emb, mapper,
                                                                                   **shared)
    runs = list(ways.values())
    before_s = runs[0][2]  # wall seconds of the `before` way
    product = runs[1][0]  # outcomes of the product's one-process way
    return {"protocol": name, "folds_timed": len(folds), "folds_in_protocol": n_all, "ways": {
        way: {"identical_outcomes": [o.__dict__ for o in outcomes] == [o.__dict__ for o in product],
              "max_abs_dS_vs_product": max(abs(o.patient_sum - p.patient_sum) for o, p in zip(outcomes, product)),
              "seconds_per_fold": spread(per_fold, 1) if per_fold else None, "wall_s": round(wall, 1),
              "projected_protocol_s": round(wall / len(folds) * n_all),
              "speed_up_vs_before": round(before_s / wall, 2)}
        for way, (outcomes, per_fold, wall) in ways.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pancreas", type=int, default=40)
    parser.add_argument("--small-intestine", type=int, default=51)
    parser.add_argument("--other", type=int, default=8)
    parser.add_argument("--patches", type=int, default=100)
    parser.add_argument("--folds", type=int, default=6, help="Folds timed per protocol and way (a sample).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="Time the whole protocols once, product settings.")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    emb = synthetic(args.pancreas, args.small_intestine, args.other, args.patches)
    result = {"environment": environment(), "patients": args.pancreas + args.small_intestine + args.other,
              "patches_per_patient": args.patches, "dims": 2048}
    if args.full:
        with mapper_for(workers=args.workers) as mapper:
            for name, protocol in (("extended", extended_loo), ("binary", binary_loo)):
                t = time.perf_counter()
                protocol(emb, REFERENCE, "reference", seed=0, mapper=mapper)
                result[f"{name}_loo_s"] = round(time.perf_counter() - t, 1)
        md = (f"# Protocols at paper scale\n\n{result['patients']} patients x {args.patches} patches x 2048 dims, "
              f"{result['environment']['cores']} cores, {args.workers} workers: extended leave-one-out "
              f"{result['extended_loo_s']} s, binary leave-one-out {result['binary_loo_s']} s.\n")
        write_results(args.out, "protocols-scale-full", result, md)
        print(md)
        return
    extended, binary = extended_folds(emb), binary_folds(emb)
    result["protocols"] = [
        compare("extended leave-one-out", extended_fold, extended[:args.folds], len(extended), emb, args.workers,
                fit_fraction=0.6),
        compare("binary leave-one-out", binary_fold, binary[:args.folds], len(binary), emb, args.workers)]
    rows = [[p["protocol"], way, w["identical_outcomes"], f"{w['max_abs_dS_vs_product']:.2g}",
             "" if w["seconds_per_fold"] is None else
             f"{w['seconds_per_fold']['median']} ({w['seconds_per_fold']['min']}–{w['seconds_per_fold']['max']})",
             w["wall_s"], w["projected_protocol_s"], w["speed_up_vs_before"]]
            for p in result["protocols"] for way, w in p["ways"].items()]
    md = "\n".join([
        f"# Protocols at paper scale ({result['patients']} patients x {args.patches} patches x 2048 dims, "
        f"{result['environment']['cpu']}, {result['environment']['cores']} cores)", "",
        f"The first {args.folds} folds of each protocol, each way in turn; the protocol's time projected from them.",
        "", table(["protocol", "way", "same outcomes", "max |dS|", "s per fold (median, min–max)",
                   f"wall s ({args.folds} folds)", "projected protocol s", "x before"], rows), "",
        "Goal: extended leave-one-out at the paper's size ≥ 2x faster on 2 cores."])
    write_results(args.out, "protocols-scale", result, md)
    print(md)


if __name__ == "__main__":
    main()
