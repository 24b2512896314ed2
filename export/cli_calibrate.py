"""`netorigin calibrate`: band table from per-patient sums, or from embeddings + a fitted head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from netorigin.calibration.bands import calibrate_bands
from netorigin.calibration.bands_io import (
    calibration_record,
    check_bands_precision,
    read_sums,
    table_from_sums,
    write_bands,
    write_bands_into_model,
)
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.errors import InputDataError
from netorigin.calibration.splits import EMBEDDER_ROLE, in_sample, patient_digests, refuse_in_sample
from netorigin.runtime.cli.options import quiet_option
from netorigin.runtime.model.contract import load_contract
from netorigin.runtime.progress import progress

from .build import check_head_embedder
from .head_file import load_head
from .heads import as_scorer


@click.command("calibrate")
@click.option("--sums", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Per-patient sums: CSV patient,label,sum or JSON.")
@click.option("--embeddings", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Embeddings of held-out calibration patients (with --head).")
@click.option("--head", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fitted head (from `fit` or `train`): scores --embeddings; its fit patients are refused for "
                   "calibration.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the bands into this model's metadata (graph untouched; verdict digest changes).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the band table as JSON (or, with --model, the calibrated model to this path).")
@click.option("--allow-in-sample", is_flag=True,
              help="RESEARCH ONLY: accept calibration patients that also fitted the head (bands too narrow); "
                   "the model's provenance and every report then say so.")
@quiet_option
def command(sums, embeddings, head, model, out, allow_in_sample, quiet) -> None:
    """Compute the abstention band for every c = k/o (method.md) on held-out patients and store it."""
    if (sums is None) == (embeddings is None):
        raise click.UsageError("give either --sums or --embeddings with --head")
    if model is None and out is None:
        raise click.UsageError("give --model (write into a model) and/or --out (JSON)")
    if embeddings is not None and head is None:
        raise click.UsageError("--embeddings needs --head")
    fitted = load_head(head) if head is not None else None
    contract = load_contract(model) if model is not None else None  # read once: checked, then rewritten
    if contract is not None:
        check_bands_precision(contract.precision, model)  # before any embedding is scored
    if contract is not None and fitted is not None:
        check_head_is_models(fitted, contract, head)
    embedder_trained: Sequence[str] | None = None
    if sums is not None:
        rows, ids_known = read_sums(sums)
        origin, decisions = f"calibrate --sums {sums.name}", "a sums table (not checked to be this model's)"
    else:
        emb = Embeddings.load(embeddings)
        check_head_embedder(fitted["info"], emb.info.get("embedder", {}).get("weights_sha256"), embeddings)
        if contract is not None:
            emb.check_made_by(contract.record.embedder.weights_sha256, contract.patches_per_case, embeddings)
        with progress(len(emb.patient_table()), "scoring", "patients", quiet) as step:
            rows, _ = as_scorer(fitted["pipeline"]).score(emb, step)
        ids_known, embedder_trained = True, emb.embedder_trained_on
        origin = f"calibrate --embeddings {embeddings.name} --head {head.name}"
        decisions = f"the fitted {fitted['kind']} head (scikit-learn float64 or PyTorch) on stored embeddings"
    fit_ids = fitted["info"].get("fit_patients") if fitted else None
    fit_digests = list(contract.record.head.fit_patients_sha256) if contract else None
    if contract is not None:  # the model's embedder made the embeddings (checked above), or the sums are a table
        embedder_trained = contract.record.embedder.trained_on_patients_sha256
    patients = [r.patient for r in rows] if ids_known else []
    overlap = in_sample(patients, fit_ids, fit_digests)
    refuse_in_sample(overlap, allow_in_sample, sums or embeddings)
    leaked = in_sample(patients, None, embedder_trained)
    refuse_in_sample(leaked, allow_in_sample, sums or embeddings, EMBEDDER_ROLE)
    checked = ids_known and (fit_ids is not None or fit_digests is not None)
    table = calibrate_bands(*table_from_sums(rows))
    calibration = calibration_record(table, rows, origin=origin, decisions=decisions, ids_known=ids_known,
                                     in_sample_patients=len(set(overlap) | set(leaked)), checked_against_fit=checked)
    if model is not None:
        target = write_bands_into_model(contract, table, calibration, out)
        click.echo(f"bands written into {target} (default c = {table.default_confidence:g}); checks measured under "
                   "the old bands (OpenVINO bf16) were dropped: `netorigin train` runs them")
    else:
        write_bands(table, calibration, out)
        click.echo(f"band table -> {out}")
    if overlap or leaked:
        click.echo(f"WARNING: in-sample bands ({len(set(overlap) | set(leaked))} calibration patients trained the "
                   "head or embedder): research only")
    elif not checked:
        click.echo("note: the sums name no patients, or no head or model named the fit patients, so held-out "
                   "calibration was not checked (recorded in the model)")
    for band in table.bands:
        click.echo(f"  c = {band.c:<8.4g} pi inside {band.pi_inside:<4d} ({band.lower:.6g}, {band.upper:.6g})")


def check_head_is_models(fitted: dict, contract, where) -> None:
    """Sums of another head cannot band this model: the head's kind and fit patients must be the model's."""
    record = contract.record.head
    if fitted["kind"] != record.kind or \
            tuple(patient_digests(fitted["info"].get("fit_patients", ()))) != record.fit_patients_sha256:
        raise InputDataError(f"this head ({fitted['kind']}) is not the one in {contract.path.name} ({record.kind}, "
                             "fitted on other patients): calibrate with the model's own head", where)
