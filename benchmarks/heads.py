"""SVM-sum vs ABMIL vs KMIL on the demo cohort, side by side, with each head's cost per case (seed 001's Table 3).

    python benchmarks/heads.py [--workers 2] [--out /tmp/heads-bench]

Writes the demo's synthetic training and test cohorts (the same seeds and sizes as `netorigin demo`), embeds them
with the demo's seeded random-weight ResNet50 on ONNX Runtime, then runs `netorigin evaluate` exactly as a user
would, once per protocol, with --head reference --head abmil --head kmil. The demo cohort is synthetic: the
figures compare the heads' behaviour and cost, they say nothing about real slides.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, write_results  # noqa: E402

from netorigin.export.demo import FULL  # noqa: E402
from netorigin.export.embedder import build_embedder  # noqa: E402
from netorigin.export.embeddings import embed_manifest  # noqa: E402
from netorigin.export.engines import make_engine  # noqa: E402
from netorigin.export.synthetic import make_cohort  # noqa: E402

HEADS = ("reference", "abmil", "kmil")
PROTOCOLS = (("binary", None), ("extended", None), ("binary-external", "test"), ("external", "test"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/heads-bench"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    embedder, info = build_embedder("random", seed=0)
    engine = make_engine(embedder, "onnx")
    files = {}
    for offset, split in enumerate(("train", "test")):
        files[split] = args.out / f"{split}.npz"
        if files[split].exists():  # embedded once per output folder
            continue
        manifest = make_cohort(args.out / "cohort" / split, getattr(FULL, split), seed=offset, mpps=(0.5,),
                               size_um=FULL.size_um)
        embed_manifest(manifest, engine, info, patches_per_case=FULL.patches_per_case, seed=0).save(files[split])
    results = {"environment": environment(), "cohort": {"train": FULL.train, "test": FULL.test,
                                                        "patches_per_case": FULL.patches_per_case},
               "protocols": {}}
    lines = ["# Heads side by side on the demo cohort (synthetic; behaviour and cost, not clinical accuracy)", ""]
    for protocol, external in PROTOCOLS:
        out = args.out / protocol
        command = [str(Path(sys.executable).parent / "netorigin"), "evaluate", str(files["train"]), "--protocol",
                   protocol, "--out", str(out), "--workers", str(args.workers)]
        command += [part for head in HEADS for part in ("--head", head)]
        if external:
            command += ["--external", str(files[external])]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        comparison = json.loads((out / f"{protocol}-comparison.json").read_text())
        results["protocols"][protocol] = comparison | {"wall_time_s": round(seconds, 1)}
        lines += [f"## {protocol} ({seconds:.0f} s for all three heads, {args.workers} workers)", "", "```",
                  done.stdout.rstrip(), "```", ""]
    write_results(ROOT / "results", "heads", results, "\n".join(lines))


if __name__ == "__main__":
    main()
