"""`netorigin batch`: many cases from a manifest, with a progress bar; resumable."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..atomic import ensure_writable_dir
from ..batch.cluster import mapper_for
from ..batch.cluster_access import ClusterAccess
from ..batch.slides import SUMMARY_NAME, output_lock, plan_resume, read_manifest, run_batch, status_counts
from ..dicom.dicomweb import is_series_url
from ..families import is_mri_model
from ..model.contract import DEMO_WARNING
from ..mri.batch import read_mri_manifest, run_mri_batch
from ..mri.predictor import MriPredictor
from ..progress import progress
from ..reports.report import CaseExtras
from ..slide.predictor import Predictor
from .options import (
    cluster_options,
    model_options,
    mpp_rule,
    occlusion_option,
    page_grid,
    quiet_option,
    refuse_slide_options,
    region_rules,
    slide_model_options,
)


@click.command("batch")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
@model_options
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Cases processed in parallel.")
@click.option("--geojson", is_flag=True, help="Also write each case's patches as QuPath detections.")
@click.option("--thumbnail", is_flag=True, help="Also write a PNG per slide with its patches.")
@click.option("--store", is_flag=True, help="Store each case's DICOM results back to the DICOMweb service its slides "
              "came from (every slide of the manifest given by its DICOMweb series URL).")
@cluster_options("one task per case on its workers, which share OUT")
@quiet_option
@click.option("--redo", is_flag=True, help="Replace finished reports made by another model, confidence, seed or "
              "slide files (without it such a folder is refused).")
@click.option("--clinical", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="MRI Models F/G: clinical CSV with a row per patient.")
@occlusion_option
def command(manifest, out, model, device, engine, ov_precision, allow_lower_fidelity, confidence, seed, threads,
            read_workers, trusted_keys, include, exclude, object_types, mpp, force_mpp, workers, geojson, thumbnail,
            store, cluster, quiet, redo, clinical, occlusion_grid) -> None:
    """Predict every case of MANIFEST (CSV: case, slide[, annotations, specimen, mpp, force_mpp];
    one row per slide; a row's mpp / force_mpp wins over --mpp / --force-mpp).

    A finished case is skipped on a rerun only if its report was made by the same model identity, confidence,
    seed and slide files; reports of another run are refused unless --redo. A failing case is recorded and the
    others go on. Exit code 1 if any case failed or had insufficient tissue.
    """
    if is_mri_model(model):
        refuse_slide_options({"--workers": workers > 1, "--geojson": geojson, "--thumbnail": thumbnail,
                              "--store": store} | slide_model_options(engine, ov_precision, allow_lower_fidelity,
                                                                      confidence, mpp, force_mpp))
        _mri_batch(manifest, model, device, threads, trusted_keys, clinical, out, quiet, redo, cluster,
                   page_grid(occlusion_grid))
        return
    if clinical is not None or occlusion_grid is not None:
        raise click.UsageError("--clinical and --occlusion-grid are for MRI lesion models")
    if cluster.scheduler and workers > 1:
        raise click.UsageError("--workers are threads here; with --scheduler the cluster's workers run the cases")
    cases = read_manifest(manifest, mpp_rule(mpp, force_mpp))
    if store and not all(is_series_url(s.path) for case in cases for s in case.slides):
        raise click.UsageError("--store needs every slide of the manifest given by its DICOMweb series URL")
    with mapper_for(cluster) as mapper:  # a cluster that may not be used is refused before OUT is touched
        ensure_writable_dir(out)
        # On a cluster the workers open the engine; here the model and settings are only verified.
        predictor = Predictor(model, device=device, confidence=confidence, seed=seed, read_workers=read_workers,
                              threads=threads, rules=region_rules(include, exclude, object_types), engine=engine,
                              ov_precision=ov_precision, allow_lower_fidelity=allow_lower_fidelity,
                              trusted_keys=trusted_keys or None, inference=cluster.scheduler is None)
        with output_lock(out):  # the resume plan and the run, with no second batch in between
            keep = plan_resume(predictor, cases, out, redo)
            if predictor.contract.is_demo:
                click.echo(f"*** {DEMO_WARNING} ***", err=True)
            with progress(len(cases), "cases", "cases", quiet) as step:
                outcomes = run_batch(predictor, cases, out, workers, on_done=lambda _: step(),
                                     extras=CaseExtras(geojson, thumbnail, store), keep=keep, mapper=mapper)
    _report_counts(outcomes, out)


def _mri_batch(manifest: Path, model: str, device: str, threads: int | None, trusted_keys: tuple[str, ...],
               clinical: Path | None, out: Path, quiet: bool, redo: bool, cluster: ClusterAccess,
               occlusion_grid: int | None) -> None:
    """MRI cases (manifest patient[,label],<series folder per sequence>,roi): a report and page each, the summary,
    and results.csv for compare-raters when labels are given; here or one task per case on a Dask cluster."""
    predictor = MriPredictor(model, device=device, threads=threads, trusted_keys=trusted_keys or None)
    items = read_mri_manifest(manifest, predictor, clinical)
    with mapper_for(cluster) as mapper:  # a cluster that may not be used is refused before OUT is touched
        ensure_writable_dir(out)
        if predictor.contract.is_demo:
            click.echo(f"*** {DEMO_WARNING} ***", err=True)
        with progress(len(items), "cases", "cases", quiet) as step:
            outcomes = run_mri_batch(predictor, items, out, on_done=lambda _: step(), redo=redo, mapper=mapper,
                                     occlusion_grid=occlusion_grid)
    _report_counts(outcomes, out)


def _report_counts(outcomes: list, out: Path) -> None:
    counts = status_counts(outcomes)
    click.echo(f"{counts['ok']} ok, {counts['skipped']} skipped (already done), "
               f"{counts['insufficient_tissue']} insufficient tissue, {counts['failed']} failed "
               f"-> {out / SUMMARY_NAME}")
    for o in outcomes:
        if o.status in ("failed", "insufficient_tissue"):
            click.echo(f"  {o.case_id}: {o.reason}", err=True)
    if counts["failed"] or counts["insufficient_tissue"]:
        sys.exit(1)
