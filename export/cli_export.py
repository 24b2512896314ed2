"""`netorigin export`: one self-describing ONNX model (embedder + PCA + classifier + bands + metadata)."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import click

from netorigin.calibration.bands_io import read_bands, variant_bands_refusal
from netorigin.runtime.cli.options import mpp_rule, quiet_option, region_options, region_rules
from netorigin.runtime.progress import progress

from .build import build_model_bytes, check_precision, write_model
from .cli_embed import embedder_options
from .embedder import build_embedder
from .embeddings import calibration_patches as calibration_patches_from
from .embeddings import cohort_patients
from .head_file import load_head
from .onnx_graph import export_embedder
from .precision import PRECISIONS, Int8Recipe, calibration_batches, kept_float_nodes


def int8_options(function):
    """The INT8 recipe (stages kept in float32), shared by train and export."""
    defaults = Int8Recipe()

    @click.option("--int8-stem", type=click.Choice(["float", "int8"]), default="float" if defaults.float_stem
                  else "int8", show_default=True, help="The stem convolution in the INT8 model.")
    @click.option("--int8-keep-float", multiple=True, default=defaults.keep_float, metavar="STAGE",
                  show_default=True, help="ResNet50 stage kept in float32 in the INT8 model (repeatable), e.g. "
                                          "trunk.layer4 or trunk.bn1 (the stem); see benchmarks/int8.py.")
    @functools.wraps(function)
    def wrapper(*args, int8_stem: str, int8_keep_float: tuple[str, ...], **kwargs):
        return function(*args, int8=Int8Recipe(tuple(int8_keep_float), int8_stem == "float"), **kwargs)

    return wrapper


@click.command("export")
@click.option("--head", "head_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Fitted head from `netorigin fit`.")
@embedder_options
@click.option("--bands", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Band table from `netorigin calibrate --out`.")
@click.option("--no-bands", is_flag=True, help="Export without an abstention band (majority vote only); "
              "the model says so in its metadata.")
@click.option("--demo", is_flag=True, help="Mark the model as a DEMO model (not for diagnosis).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp16: for GPUs; int8: static QDQ for CPUs (needs --calibration-manifest).")
@click.option("--calibration-manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Training manifest (patch folder or slides) whose patches calibrate INT8.")
@click.option("--calibration-patches", type=click.IntRange(1), default=256, show_default=True,
              help="Training patches for INT8 calibration (MinMax; 128+ measured clearly better than 64).")
@int8_options
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed for choosing calibration patches.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
@region_options
@quiet_option
def command(head_path, weights_kind, weights, weights_seed, bands, no_bands, demo, precision, calibration_manifest,
            calibration_patches, int8, seed, out, include, exclude, object_types, mpp, force_mpp, quiet) -> None:
    """Export the model; the embedder weights must be those the head was fitted on."""
    if (bands is None) == (not no_bands):
        raise click.UsageError("give --bands FILE, or --no-bands to export an uncalibrated model explicitly")
    if precision == "int8" and calibration_manifest is None:
        raise click.UsageError("--precision int8 needs --calibration-manifest (training patches)")
    start = time.perf_counter()
    head = load_head(head_path)
    check_precision(head["kind"], precision)  # before any training patch is read
    if bands and precision != "fp32":
        raise click.UsageError(variant_bands_refusal(precision))  # before any calibration patch is read
    banded = None
    if bands:
        table, calibration = read_bands(bands)
        banded = table, replace(calibration, origin=f"{calibration.origin}, then export --bands {bands.name}")
    embedder, info = build_embedder(weights_kind, weights, weights_seed)
    proto = export_embedder(embedder)
    patches, calibration_set = (None, None)
    if precision == "int8":
        kept_float_nodes(proto, int8.keep_float)  # a misnamed stage is refused before any patch is read
        with progress(len(cohort_patients(calibration_manifest)), "calibration patients", "patients",
                      quiet) as step:
            patches, calibration_set = calibration_patches_from(
                calibration_manifest, calibration_patches, seed, rules=region_rules(include, exclude, object_types),
                mpp=mpp_rule(mpp, force_mpp), on_patient=step)
        calibration_set |= int8.as_dict()
    batches = calibration_batches(len(patches)) if patches is not None else 0
    with progress(batches, "INT8 calibration", "batches", quiet) as step:
        model_bytes = build_model_bytes(embedder, info, head, banded, demo=demo, precision=precision,
                                        embedder_proto=proto, calibration_patches=patches,
                                        calibration_set=calibration_set, int8=int8, on_batch=step)
    write_model(out, model_bytes)
    click.echo(f"exported {out} ({precision}, {len(model_bytes) / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)"
               + ("" if banded else "  [no bands: majority vote only]"))
