"""Wall time of the evaluation protocols on a synthetic cohort of the paper's size.

    python benchmarks/protocols_scale.py [--pancreas 40 --small-intestine 51 --other 8 --patches 100]

99 patients x 100 patches x 2048 dims by default; embeddings are gamma-distributed and non-negative like
ResNet50 features, with a class shift on 200 dimensions.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, write_results  # noqa: E402

from netorigin.calibration.embeddings import Embeddings  # noqa: E402
from netorigin.calibration.protocols import binary_loo, extended_loo  # noqa: E402
from netorigin.export.heads import fit_scorer  # noqa: E402

REFERENCE = partial(fit_scorer, "reference")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pancreas", type=int, default=40)
    parser.add_argument("--small-intestine", type=int, default=51)
    parser.add_argument("--other", type=int, default=8)
    parser.add_argument("--patches", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    emb = synthetic(args.pancreas, args.small_intestine, args.other, args.patches)
    t = time.perf_counter()
    extended = extended_loo(emb, REFERENCE, "reference", seed=0)
    extended_s = time.perf_counter() - t
    t = time.perf_counter()
    binary = binary_loo(emb, REFERENCE, "reference", seed=0)
    binary_s = time.perf_counter() - t
    result = {"environment": environment(), "patients": args.pancreas + args.small_intestine + args.other,
              "patches_per_patient": args.patches, "dims": 2048, "extended_loo_s": round(extended_s, 1),
              "binary_loo_s": round(binary_s, 1), "binary_patient_accuracy": binary["patient_accuracy"],
              "extended_confusion_at_0.875": extended["confusion"]["0.875"]}
    md = (f"# Protocols at paper scale\n\n{result['patients']} patients x {args.patches} patches x 2048 dims, "
          f"{result['environment']['cores']} cores: extended leave-one-out {result['extended_loo_s']} s, binary "
          f"leave-one-out {result['binary_loo_s']} s.\n")
    write_results(args.out, "protocols-scale", result, md)
    print(md)


if __name__ == "__main__":
    main()
