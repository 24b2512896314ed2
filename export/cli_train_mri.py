"""`netorigin train-mri`: seed 002's lesion models (A-G) on an MRI cohort: cross-validation, then one ONNX model
each."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from netorigin.runtime.atomic import ensure_writable_dir
from netorigin.runtime.cli.options import quiet_option
from netorigin.runtime.mri.protocol import MODEL_KINDS
from netorigin.runtime.progress import progress

from .mri_model import DEFAULT_ARCHITECTURE
from .mri_train import MriTrainPlan, check_trainable, manifest_rows, read_mri_cohort, train_mri, training_batches


@click.command("train-mri")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--clinical", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Clinical CSV (patient + the seed's fields); needed by Models F and G.")
@click.option("--kind", "kinds", multiple=True, required=True, type=click.Choice(sorted(MODEL_KINDS)),
              help="Model to train (repeatable): A/B seven-way (6 / 3 sequences), C/D benign vs malignant, E "
                   "malignancy three-way, F/G malignancy three-way with clinical data (6 / 3 sequences).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--architecture", default=DEFAULT_ARCHITECTURE, show_default=True,
              help="timm architecture (the seed's Inception-ResNet-v2 by default).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Local timm-compatible checkpoint (e.g. ImageNet); random (seeded) without it. Never downloaded.")
@click.option("--epochs", type=click.IntRange(1), default=60, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--learning-rate", type=float, default=0.1, show_default=True,
              help="SGD, momentum 0.9, halved every 20 epochs (the seed's).")
@click.option("--folds", type=click.IntRange(0), default=5, show_default=True,
              help="Cross-validation folds by patient before the final fit (0 or 1: none).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--demo", is_flag=True, help="Mark the models as demo models (reports say NOT FOR DIAGNOSIS).")
@quiet_option
def command(manifest, clinical, kinds, out, architecture, weights, epochs, batch_size, learning_rate, folds, seed,
            demo, quiet) -> None:
    """Train on MANIFEST (patient,label,t2,dwi_b800,t1_pre,arterial,portal,equilibrium,roi: a series folder per
    sequence and the T2 region, paths relative to the manifest; label one of the seven lesion classes)."""
    cohorts, plans = {}, {}
    for kind in dict.fromkeys(kinds):  # every patient of every model checked before anything is trained
        with progress(manifest_rows(manifest), f"groups for {kind}", "patients", quiet) as step:
            patients, problems = read_mri_cohort(manifest, clinical, MODEL_KINDS[kind], on_patient=step)
        for line in problems:
            click.echo(line, err=True)
        if problems:
            click.echo(f"{len(problems)} patient(s) cannot be used: nothing was trained", err=True)
            sys.exit(1)
        plans[kind] = MriTrainPlan(kind=kind, architecture=architecture, weights=weights, epochs=epochs,
                                   batch_size=batch_size, learning_rate=learning_rate, folds=folds, seed=seed,
                                   demo=demo)
        check_trainable(patients, plans[kind])  # every model's cohort, before the first is trained
        cohorts[kind] = patients
    ensure_writable_dir(out)
    for kind, patients in cohorts.items():
        start = time.perf_counter()
        plan = plans[kind]
        with progress(training_batches(patients, plan), f"training {kind}", "batches", quiet) as step:
            summary = train_mri(patients, out, plan, f"model-{kind}", on_batch=step)
        parity = summary["parity_onnx_vs_pytorch"]
        click.echo(f"Model {kind}: {summary['patients']} patients, {summary['groups']} groups -> "
                   f"{out / summary['model']} ({time.perf_counter() - start:.1f} s); ONNX vs PyTorch max |dp| "
                   f"{parity['max_abs_group_probability']:.2g} per group, {parity['patient_class_flips']} patient "
                   "class flips" + (f"; cross-validation -> {out / summary['cross_validation']['results']}"
                                    if "cross_validation" in summary else ""))
