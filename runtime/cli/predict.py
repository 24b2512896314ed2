"""`netorigin predict`: one case (one or more slides) -> verdict, JSON report and optional extras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..atomic import ensure_writable_dir
from ..dicom.dicomweb import is_series_url
from ..errors import InsufficientTissueError, MriInputError
from ..families import is_mri_model
from ..mri.batch import read_mri_manifest
from ..mri.clinical import read_clinical
from ..mri.predictor import MriCase, MriPredictor
from ..mri.report import mri_report, mri_text, write_mri_case
from ..names import case_id_from_path, check_case_id
from ..reports.report import CaseExtras, case_report, text_summary, write_case_outputs, write_insufficient_report
from ..slide.predictor import Predictor, as_inputs
from .options import (
    model_options,
    mpp_rule,
    occlusion_option,
    page_grid,
    refuse_slide_options,
    region_rules,
    slide_model_options,
)


@click.command("predict")
@click.argument("slides", nargs=-1, required=True, type=click.Path())
@click.option("--annotations", "-a", multiple=True, type=click.Path(dir_okay=False),
              help="QuPath GeoJSON per slide, in slide order; none = tissue detection.")
@click.option("--specimen", multiple=True, help="Specimen id per slide, in slide order (for the allotment).")
@click.option("--case-id", default=None, help="Case id (default: the first slide's name).")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the text summary.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None, help="Folder for the report files.")
@click.option("--geojson", is_flag=True, help="Also write the patches as QuPath detections (needs --out).")
@click.option("--thumbnail", is_flag=True, help="Also write a PNG of each slide with its patches (needs --out).")
@click.option("--level", type=click.IntRange(0), default=None, help="Force this pyramid level (benchmarks only).")
@click.option("--store", is_flag=True, help="Store the DICOM results (SR, annotations) back to the DICOMweb service "
              "the slides came from (needs --out and slides given by DICOMweb series URL).")
@click.option("--roi", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="MRI models: the T2 region of interest (default: roi-t2.nii.gz in the case folder).")
@click.option("--clinical", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="MRI Models F/G: clinical CSV with a row for the case (its id: --case-id or the folder name).")
@occlusion_option
def command(slides, annotations, specimen, case_id, model, device, engine, ov_precision, allow_lower_fidelity,
            confidence, seed, threads, read_workers, trusted_keys, include, exclude, object_types, mpp, force_mpp,
            as_json, out, geojson, thumbnail, level, store, roi, clinical, occlusion_grid) -> None:
    """Predict the primary site of one case from its slides (SLIDES of one patient: files OpenSlide reads, or
    folders of one slide's DICOM instances); with an MRI lesion model, the lesion class of one MRI case (SLIDES is
    then the case folder: a sub-folder per sequence, t2, dwi_b800, t1_pre, arterial, portal, equilibrium)."""
    if is_mri_model(model):
        refuse_slide_options({"--annotations": bool(annotations), "--specimen": bool(specimen),
                              "--geojson": geojson, "--thumbnail": thumbnail, "--store": store,
                              "--level": level is not None} | slide_model_options(
            engine, ov_precision, allow_lower_fidelity, confidence, mpp, force_mpp))
        if len(slides) != 1:
            raise click.UsageError("an MRI lesion model takes one case: a case folder or a one-row MRI manifest")
        if occlusion_grid is not None and out is None:
            raise click.UsageError("--occlusion-grid draws the case page: it needs --out DIR")
        _predict_mri(Path(slides[0]), model, device, threads, trusted_keys, case_id, roi, clinical, as_json, out,
                     occlusion_grid)
        return
    if roi is not None or clinical is not None or occlusion_grid is not None:
        raise click.UsageError("--roi, --clinical and --occlusion-grid are for MRI lesion models")
    if (geojson or thumbnail or store) and out is None:
        raise click.UsageError("--geojson, --thumbnail and --store need --out DIR")
    if store and not all(is_series_url(s) for s in slides):
        raise click.UsageError("--store needs every slide given by its DICOMweb series URL (the results go back "
                               "to the service the slides came from)")
    case_id = check_case_id(case_id) if case_id is not None else case_id_from_path(slides[0])
    slide_mpp = mpp_rule(mpp, force_mpp)
    out_dir = Path(out) if out else None
    if out_dir is not None:
        ensure_writable_dir(out_dir)
    predictor = Predictor(model, device=device, confidence=confidence, seed=seed, read_workers=read_workers,
                          threads=threads, rules=region_rules(include, exclude, object_types), engine=engine,
                          ov_precision=ov_precision, allow_lower_fidelity=allow_lower_fidelity,
                          trusted_keys=trusted_keys or None)
    try:
        result = predictor.predict_case(slides, annotations, case_id=case_id, specimens=specimen or None,
                                        mpp=slide_mpp, level=level)
    except InsufficientTissueError as exc:
        if out_dir is not None:
            write_insufficient_report(out_dir, case_id, exc, predictor,
                                      as_inputs(slides, annotations, specimen or None, slide_mpp), level,
                                      CaseExtras(store=store))
        raise
    if out_dir is not None:
        write_case_outputs(result, out_dir, CaseExtras(geojson, thumbnail, store))
    if as_json:
        click.echo(json.dumps(case_report(result), indent=2))
    else:
        click.echo(text_summary(result))
    sys.stdout.flush()


def _predict_mri(given: Path, model: str, device: str, threads: int | None, trusted_keys: tuple[str, ...],
                 case_id: str | None, roi: Path | None, clinical: Path | None, as_json: bool, out: str | None,
                 occlusion_grid: int | None) -> None:
    """One MRI case, a case folder or a one-row MRI manifest (series and region as folders, files or DICOMweb
    series URLs): checked whole (series, alignment, region, clinical record) before the model runs; with --out,
    its report and case page (occlusion maps on the page's grid, none with grid 0)."""
    out_dir = Path(out) if out else None
    predictor = MriPredictor(model, device=device, threads=threads, trusted_keys=trusted_keys or None)
    if given.suffix.lower() == ".csv":
        if case_id is not None or roi is not None:
            raise click.UsageError("a manifest row names its patient and region: no --case-id or --roi with it")
        rows = read_mri_manifest(given, predictor, clinical)
        if len(rows) != 1:
            raise MriInputError(f"predict takes one case: this manifest has {len(rows)} rows (use batch)", given)
        case = rows[0].case
    else:
        patient = check_case_id(case_id if case_id is not None else given.resolve().name)
        records = read_clinical(clinical) if clinical is not None else {}
        if clinical is not None and patient not in records:
            raise MriInputError(f"no row for patient {patient} in the clinical table", clinical)
        case = MriCase.from_folder(given, patient, roi, records.get(patient))
    result = predictor.predict(case, page_grid(occlusion_grid) if out_dir is not None else None)
    report = mri_report(result, predictor)
    if out_dir is not None:  # created only for a result: a refused case leaves nothing behind
        ensure_writable_dir(out_dir)
        write_mri_case(out_dir, result, report)
    click.echo(json.dumps(report, indent=2) if as_json else mri_text(report))
