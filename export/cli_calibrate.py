"""`netorigin calibrate`: band table from per-patient sums, or from embeddings + a fitted head."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import PatientSum, read_sums, table_from_sums, write_bands, write_bands_into_model
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.scoring import sums_by_patient

from .heads import load_head


def head_patient_sums(embeddings: Path, head: Path) -> list[PatientSum]:
    """Per-patient sums of the head's decisions on the embedded patients."""
    emb = Embeddings.load(embeddings)
    pipeline = load_head(head)["pipeline"]
    decisions = pipeline.decision_function(emb.embeddings.astype(np.float64))
    return sums_by_patient(emb.patients, emb.labels, decisions)


@click.command("calibrate")
@click.option("--sums", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Per-patient sums: CSV patient,label,sum or JSON.")
@click.option("--embeddings", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Embeddings of held-out calibration patients (with --head).")
@click.option("--head", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fitted head (.joblib) to score --embeddings.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the bands into this model's metadata (re-hashed; graph untouched).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the band table as JSON (or, with --model, the calibrated model to this path).")
def command(sums, embeddings, head, model, out) -> None:
    """Compute the abstention band for every c = k/o (method.md) and store it."""
    if (sums is None) == (embeddings is None):
        raise click.UsageError("give either --sums or --embeddings with --head")
    if sums is not None:
        pi, others = table_from_sums(read_sums(sums))
    else:
        if head is None:
            raise click.UsageError("--embeddings needs --head")
        pi, others = table_from_sums(head_patient_sums(embeddings, head))
    table = calibrate_bands(pi, others)
    if model is None and out is None:
        raise click.UsageError("give --model (write into a model) and/or --out (JSON)")
    if model is not None:
        target = write_bands_into_model(model, table, out)
        click.echo(f"bands written into {target} (default c = {table.default_confidence:g})")
    else:
        write_bands(table, out)
        click.echo(f"band table -> {out}")
    for band in table.bands:
        click.echo(f"  c = {band.c:<8.4g} pi inside {band.pi_inside:<4d} ({band.lower:.6g}, {band.upper:.6g})")
