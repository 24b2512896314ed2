"""Seed 002's seven models (A-G) on one synthetic cohort: each trained on the same training patients, each run by
the runtime from DICOM on the same held-out patients, and the seed's Tables 1-4 shapes for all seven (per-class AUC
with DeLong's CI, sensitivity / specificity with Clopper-Pearson intervals, DeLong between models on the same
patients and classes, Cohen's kappa). SYNTHETIC DATA: these tables say the chain works end to end, not how the
seed's models perform on patients.

    python benchmarks/mri_tables.py [--train-per-class 4] [--test-per-class 4] [--epochs 12] [--workdir DIR]

The demo's recipe (`netorigin demo --mri`): mobilenetv3_small_050, learning rate 0.01, no cross-validation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import environment, write_results  # noqa: E402

from netorigin.calibration.rater_tables import tables_markdown  # noqa: E402
from netorigin.export.mri_demo import MRI_FULL, run_mri_demo  # noqa: E402
from netorigin.runtime.mri.protocol import MODEL_KINDS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=4)
    parser.add_argument("--test-per-class", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=MRI_FULL.epochs)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    plan = replace(MRI_FULL, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                   epochs=args.epochs, kinds=tuple(MODEL_KINDS))
    with tempfile.TemporaryDirectory() as scratch:
        summary = run_mri_demo(args.workdir or Path(scratch), plan, quiet=False)
    env = environment()
    rows = [f"| {kind} | {m['training']['patients']} | {m['held_out_patients']} | {m['train_s']:.0f} | "
            f"{m['patients_per_s']:.2f} | {m['training']['parity_onnx_vs_pytorch']['max_abs_group_probability']:.1e} |"
            for kind, m in summary["models"].items()]
    markdown = "\n".join([
        f"# Seed 002's seven models on a synthetic cohort ({env['cpu']}, {env['cores']} cores) — SYNTHETIC DATA", "",
        f"{7 * plan.train_per_class} training and {7 * plan.test_per_class} held-out synthetic patients; "
        f"{plan.architecture}, {plan.epochs} epochs, learning rate {plan.learning_rate}; each model's held-out "
        "patients are those of its task (C/D: all; E/F/G: the malignant ones).", "",
        "| model | trained on | held out | train s | predict patients/s | ONNX vs PyTorch max abs dp |",
        "|---|---|---|---|---|---|", *rows, tables_markdown(summary["tables"])])
    write_results(args.out, "mri-tables", {"environment": env, **summary}, markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
