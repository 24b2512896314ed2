"""`netorigin train`: cohort -> fit / calibration split -> head -> models with bands from their own decisions."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click

from netorigin.runtime.atomic import ensure_writable_dir
from netorigin.runtime.cli.options import mpp_rule, quiet_option, region_options, region_rules
from netorigin.runtime.names import check_name
from netorigin.runtime.progress import progress, say

from .cli_embed import embedder_options
from .cli_export import int8_options
from .cli_fit import HEAD_HELP, mil_options
from .embedder import build_embedder
from .embeddings import cohort_patients
from .engines import ENGINES
from .heads import ALL_HEADS
from .precision import PRECISIONS
from .train import TrainPlan, train


@click.command("train")
@click.argument("cohort", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the models, head, split, and the training summary.")
@embedder_options
@click.option("--head", type=click.Choice(ALL_HEADS), default="reference", show_default=True, help=HEAD_HELP)
@click.option("--fit-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.6,
              show_default=True, help="Share of labelled patients that fit the head (stratified); the rest and "
              "every other-origin patient fix the bands.")
@click.option("--split", "split_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help='Explicit split instead: JSON {"fit": [...], "calibration": [...]}.')
@click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS), default=("fp32",),
              show_default=True, help="Models to build (repeatable); fp32 always; each gets its own bands.")
@click.option("--int8-calibration-patches", type=click.IntRange(1), default=256, show_default=True,
              help="Fit-patient patches that calibrate INT8 quantisation.")
@int8_options
@click.option("--int8-accuracy-control/--int8-fixed-recipe", default=True, show_default=True,
              help="INT8: keep in float32 the fewest convolutions, ranked by measurement, for which the model passes "
                   "its fidelity check on the calibration patients (on top of the recipe), or the recipe alone.")
@click.option("--int8-nncf", is_flag=True,
              help="INT8 for OpenVINO instead: NNCF's accuracy control, judged by the same check run on OpenVINO "
                   "(needs the openvino and nncf packages of the export extra).")
@click.option("--int8-nncf-iterations", type=click.IntRange(1), default=40, show_default=True,
              help="--int8-nncf: NNCF's reverting rounds at most (each re-checks every calibration patient).")
@click.option("--patches-per-case", type=click.IntRange(1), default=100, show_default=True)
@click.option("--engine", type=click.Choice(ENGINES), default="onnx", show_default=True,
              help="Embedding engine for the fit patients.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seeds the split, patch sampling and the head.")
@click.option("--name", default="netorigin", show_default=True, callback=lambda _c, _p, v: check_name(v, "--name"),
              help="File name stem of the outputs.")
@click.option("--demo", is_flag=True, help="Mark the models as DEMO models (not for diagnosis).")
@click.option("--allow-in-sample", is_flag=True,
              help="RESEARCH ONLY: accept calibration patients whose patches trained the embedder (finetune); "
                   "recorded in the models and every report.")
@mil_options
@region_options
@quiet_option
def command(cohort, out, weights_kind, weights, weights_seed, head, fit_fraction, split_file, precisions,
            int8_calibration_patches, int8, int8_accuracy_control, int8_nncf, int8_nncf_iterations,
            patches_per_case, engine, seed, name,
            demo, allow_in_sample, mil, include, exclude, object_types, mpp, force_mpp, quiet) -> None:
    """Train on COHORT (slide manifest case,label,specimen,slide,annotations; patch manifest
    patient,label,specimen,slide,path; or an embeddings .npz for fp32 only)."""
    if int8_nncf and ("int8" not in precisions or int8.keep_float or not int8.float_stem or not int8_accuracy_control):
        raise click.UsageError("--int8-nncf needs --precision int8 and chooses its own float nodes (stem and head "
                               "float): not with --int8-keep-float, --int8-stem int8 or --int8-fixed-recipe")
    ensure_writable_dir(out)
    start = time.perf_counter()
    embedder, info = build_embedder(weights_kind, weights, weights_seed)
    plan = TrainPlan(head=head, fit_fraction=fit_fraction, split_file=split_file, seed=seed,
                     patches_per_case=patches_per_case, precisions=tuple(dict.fromkeys(("fp32", *precisions))),
                     int8_calibration_patches=int8_calibration_patches,
                     int8=replace(int8, search=int8_accuracy_control and not int8_nncf, nncf=int8_nncf,
                                  nncf_iterations=int8_nncf_iterations),
                     engine=engine, mil=mil,
                     rules=region_rules(include, exclude, object_types), mpp=mpp_rule(mpp, force_mpp), name=name,
                     demo=demo, allow_in_sample=allow_in_sample)
    patients = 0 if cohort.suffix == ".npz" else len(cohort_patients(cohort))  # embeddings: nothing to read
    with progress(patients, "train", "steps", quiet) as bar:  # INT8's patients and batches join once known
        result = train(cohort, out, embedder, info, plan, echo=say, on_step=bar)
    for precision, row in result.summary["models"].items():
        check = row["fidelity_vs_fp32"] or {}
        click.echo(f"  {precision}: {result.models[precision]}  default c = {row['default_confidence']:g}"
                   + (f", verdict flips vs fp32 on calibration patients {check['verdict_flips']}, max |dS| / band "
                      f"width {check['max_abs_delta_s_over_band_width'] or 0:.4f}" if precision != "fp32" else ""))
    click.echo(f"done in {time.perf_counter() - start:.1f} s")
