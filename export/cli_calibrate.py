"""`netorigin calibrate`: band table from per-patient sums, or from embeddings + a fitted head."""

from __future__ import annotations

from pathlib import Path

import click

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import read_sums, table_from_sums, write_bands, write_bands_into_model
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.errors import InputDataError
from netorigin.calibration.splits import in_sample, refuse_in_sample
from netorigin.runtime.contract import load_contract

from .heads import as_scorer, load_head
from .mil import MilHead


@click.command("calibrate")
@click.option("--sums", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Per-patient sums: CSV patient,label,sum or JSON.")
@click.option("--embeddings", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Embeddings of held-out calibration patients (with --head).")
@click.option("--head", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fitted head (.joblib): scores --embeddings; its fit patients are refused for calibration.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the bands into this model's metadata (graph untouched; verdict digest changes).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the band table as JSON (or, with --model, the calibrated model to this path).")
@click.option("--allow-in-sample", is_flag=True,
              help="RESEARCH ONLY: accept calibration patients that also fitted the head (bands too narrow); "
                   "the model's provenance and every report then say so.")
def command(sums, embeddings, head, model, out, allow_in_sample) -> None:
    """Compute the abstention band for every c = k/o (method.md) on held-out patients and store it."""
    if (sums is None) == (embeddings is None):
        raise click.UsageError("give either --sums or --embeddings with --head")
    if model is None and out is None:
        raise click.UsageError("give --model (write into a model) and/or --out (JSON)")
    if embeddings is not None and head is None:
        raise click.UsageError("--embeddings needs --head")
    fitted = load_head(head) if head is not None else None
    if sums is not None:
        rows = read_sums(sums)
    else:
        rows, _ = as_scorer(fitted["pipeline"]).score(Embeddings.load(embeddings))
    fit_ids = fitted["info"].get("fit_patients") if fitted else None
    contract = load_contract(model) if model is not None else None  # read once: checked, then rewritten
    if contract is not None and fitted is not None and \
            contract.bag_head != isinstance(fitted["pipeline"], MilHead):
        raise InputDataError(f"the head ({fitted['kind']}) and the model score cases differently (bag score vs "
                             "sum of patch decisions): its sums cannot calibrate this model's bands", model)
    fit_digests = (contract.provenance.get("training") or {}).get("fit_patients_sha256") if contract else None
    overlap = in_sample([r.patient for r in rows], fit_ids, fit_digests)
    refuse_in_sample(overlap, allow_in_sample, sums or embeddings)
    checked = fit_ids is not None or fit_digests is not None
    table = calibrate_bands(*table_from_sums(rows))
    if model is not None:
        target = write_bands_into_model(contract, table, out, calibration={
            "in_sample": bool(overlap), "in_sample_patients": len(overlap), "checked_against_fit": checked},
            sums=rows)
        click.echo(f"bands written into {target} (default c = {table.default_confidence:g})")
    else:
        write_bands(table, out)
        click.echo(f"band table -> {out}")
    if overlap:
        click.echo(f"WARNING: in-sample bands ({len(overlap)} calibration patients fitted the head): research only")
    elif not checked:
        click.echo("note: no head or model named the fit patients, so held-out calibration was not checked")
    for band in table.bands:
        click.echo(f"  c = {band.c:<8.4g} pi inside {band.pi_inside:<4d} ({band.lower:.6g}, {band.upper:.6g})")
