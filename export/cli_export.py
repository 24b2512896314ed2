"""`netorigin export`: one self-describing ONNX model (embedder + PCA + classifier + bands + metadata)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from netorigin.calibration.bands_io import read_bands

from .build import build_model_bytes, load_head, write_model
from .cli_embed import embedder_options
from .embedder import build_embedder


@click.command("export")
@click.option("--head", "head_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Fitted head from `netorigin fit`.")
@embedder_options
@click.option("--bands", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Band table from `netorigin calibrate --out`.")
@click.option("--no-bands", is_flag=True, help="Export without an abstention band (majority vote only); "
              "the model says so in its metadata.")
@click.option("--demo", is_flag=True, help="Mark the model as a DEMO model (not for diagnosis).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
def command(head_path, weights_kind, weights, weights_seed, bands, no_bands, demo, out) -> None:
    """Export the model; the embedder weights must be those the head was fitted on."""
    if (bands is None) == (not no_bands):
        raise click.UsageError("give --bands FILE, or --no-bands to export an uncalibrated model explicitly")
    start = time.perf_counter()
    head = load_head(head_path)
    table = read_bands(bands) if bands else None
    embedder, info = build_embedder(weights_kind, weights, weights_seed)
    model_bytes, _ = build_model_bytes(embedder, info, head, table, demo=demo)
    write_model(out, model_bytes)
    click.echo(f"exported {out} ({len(model_bytes) / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)"
               + ("" if table else "  [no bands: majority vote only]"))
