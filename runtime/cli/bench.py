"""`netorigin bench`: how fast this host runs a model, engine by engine, beside each one's fidelity record."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..atomic import write_text_atomic
from ..engines.session import DEVICES
from ..ops.bench import DEFAULT_BATCHES, MIN_REPS, measure, open_configurations, steps
from ..progress import progress
from ..slide.predictor import SlideInput
from .options import quiet_option


def _range(spread: dict) -> str:
    return f"{spread['median']:g} ({spread['min']:g}-{spread['max']:g})"


def _table(record: dict) -> str:
    host = record["host"]
    lines = [f"{record['slide']}: {record['repetitions']} repetitions (seeds {record['seeds'][0]}-"
             f"{record['seeds'][-1]}), {host['cores']} cores {host['cpu']}, {host['onnxruntime']}"
             + (f", OpenVINO {host['openvino']}" if host["openvino"] else ""), ""]
    header = ("configuration", "patches/s at product batch", "best batch: patches/s", "case s open->verdict",
              "vs fp32 (flips, max|dS|/band)", "fidelity here")
    rows = []
    for entry in record["configurations"]:
        if not entry["started"]:
            rows.append((entry["configuration"], f"did not start: {entry['why']}", "", "", "", ""))
            continue
        product, best = str(entry["product_batch"]), str(entry["best_batch"])
        versus = entry["vs_reference"]
        ratio = None if versus is None else versus["max_abs_dS_over_band_width"]
        rows.append((entry["configuration"], f"{product}: {_range(entry['patches_per_s'][product])}",
                     f"{best}: {_range(entry['patches_per_s'][best])}", _range(entry["case_open_to_verdict_s"]),
                     "-" if versus is None else f"{versus['verdict_flips']}, "
                     + ("no band" if ratio is None else f"{ratio:.4f}"),
                     "reference" if entry["fidelity"]["reference"]
                     else "passed" if entry["fidelity"]["passed_here"] else "NOT PASSED"))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines += ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.append("")
    for entry in record["configurations"]:
        lines.append(f"fidelity  {entry['configuration']}: {entry['fidelity']['record']}"
                     + "".join(f"; {p}" for p in entry["fidelity"]["problems"]))
    choice = record["recommendation"]
    lines.append("recommended: " + (f"{choice['configuration']} ({choice['why']})" if choice
                                    else "none: no configuration passed its fidelity check here"))
    return "\n".join(lines)


@click.command("bench")
@click.argument("slide", type=click.Path())
@click.option("--model", "-m", "models", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A netorigin model; repeat for its fp16 / INT8 variants (compared with the first, fp32, model).")
@click.option("--annotations", type=click.Path(dir_okay=False), default=None,
              help="QuPath GeoJSON of the slide's tumour (default: tissue detection).")
@click.option("--mpp", type=click.FloatRange(0, min_open=True), default=None,
              help="Microns per pixel if the slide records none.")
@click.option("--reps", type=click.IntRange(MIN_REPS), default=MIN_REPS, show_default=True,
              help="Repetitions of every measurement (median and min-max).")
@click.option("--batch", "batches", multiple=True, type=click.IntRange(1), default=DEFAULT_BATCHES,
              show_default=True, help="Batch sizes tried for the best batch (the product's batch is always added).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto = the CPU engines, and CUDA where its provider is listed.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Inference threads (default: all cores).")
@click.option("--read-workers", type=click.IntRange(1), default=4, show_default=True, help="Slide-reading threads.")
@click.option("--seed", type=click.IntRange(0), default=1, show_default=True,
              help="First case seed; repetition r uses seed + r.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Check the models' signatures against this public key (shown, never required here).")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON instead of the table.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON record to this file.")
@quiet_option
def command(slide, models, annotations, mpp, reps, batches, device, threads, read_workers, seed, trusted_keys,
            as_json, out, quiet) -> None:
    """Measure every installed engine x precision of the models on one slide: patches/s at the product's batch and
    at the best batch, one case open -> verdict (median, min-max of --reps, new seed and slide handle each time),
    each beside its fidelity record, and the fastest configuration that passed its check here."""
    item = SlideInput(slide, annotations, mpp=mpp)
    rows = open_configurations(models, device, batches, threads, read_workers, list(trusted_keys) or None)
    with progress(steps(rows, reps), "bench", "runs", quiet) as step:
        record = measure(rows, item, reps, seed, step)
    if out is not None:
        write_text_atomic(out, json.dumps(record, indent=2) + "\n")
    click.echo(json.dumps(record, indent=2) if as_json else _table(record))
