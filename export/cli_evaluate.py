"""`netorigin evaluate`: the paper's protocols on embeddings; JSON, confusion tables and curve PNGs."""

from __future__ import annotations

import json
import math
import time
from functools import partial
from pathlib import Path

import click

from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.metrics import class_metrics
from netorigin.calibration.plots import plot_curves
from netorigin.calibration.protocols import PREDICTED, binary_loo, extended_loo, external_test
from netorigin.runtime.atomic import ensure_writable_dir, write_text_atomic
from netorigin.runtime.cluster import mapper_for
from netorigin.runtime.contract import parse_confidence

from .heads import HEAD_KINDS, fit_head


def confusion_text(confusion: dict) -> str:
    header = f"{'true / called':<18}" + "".join(f"{p:>17}" for p in PREDICTED)
    rows = [f"{t:<18}" + "".join(f"{n:>17}" for n in row.values()) for t, row in confusion.items()]
    return "\n".join([header, *rows])


def _nearest_column(result: dict, confidence: float) -> str:
    return min(result["confusion"], key=lambda key: abs(float(key) - confidence))


@click.command("evaluate")
@click.argument("embeddings", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--protocol", type=click.Choice(["binary", "extended", "external"]), default="extended",
              show_default=True)
@click.option("--external", "external_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Embeddings of the external cohort (protocol external).")
@click.option("--head", type=click.Choice(HEAD_KINDS), default="reference", show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--confidence", "-c", multiple=True, default=("0", "0.875", "1"), show_default=True,
              help="Confidence levels to report in detail (nearest column).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask scheduler (e.g. tcp://host:8786): one task per fold (binary, extended).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Folds in parallel in this many processes on this machine (needs the dask extra).")
def command(embeddings, protocol, external_path, head, seed, confidence, out, scheduler, workers) -> None:
    """Evaluate on EMBEDDINGS as the paper does (every random step seeded)."""
    if scheduler and workers > 1:
        raise click.UsageError("give --scheduler (a cluster) or --workers (processes here), not both")
    if protocol == "external" and external_path is None:
        raise click.UsageError("--protocol external needs --external EMBEDDINGS")
    ensure_writable_dir(out)
    start = time.perf_counter()
    emb = Embeddings.load(embeddings)
    fit = partial(fit_head, head)
    with mapper_for(scheduler, workers=workers) as mapper:
        if protocol == "binary":
            result = binary_loo(emb, fit, head, seed, mapper=mapper)
        elif protocol == "extended":
            result = extended_loo(emb, fit, head, seed, mapper=mapper)
        else:
            result = external_test(emb, Embeddings.load(external_path), fit, head, seed)
    result["wall_time_s"] = round(time.perf_counter() - start, 2)
    lines = [f"{result['protocol']}: {len(result['patients'])} patients, head {head}, seed {seed}, "
             f"{result['wall_time_s']} s"]
    if protocol == "binary":
        lines.append(f"patch accuracy {result['patch_accuracy']:.3f}, patient accuracy "
                     f"{result['patient_accuracy']:.3f}")
    else:
        result["metrics"] = {}
        for level in confidence:
            key = _nearest_column(result, parse_confidence(level))
            result["metrics"][key] = class_metrics(result["confusion"][key])
            lines += ["", f"c = {key}", confusion_text(result["confusion"][key])]
            for cls, m in result["metrics"][key].items():
                lines.append(f"  {cls}: " + ", ".join(
                    f"{name} {v['value']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
                    if not math.isnan(v["value"]) else f"{name} n/a" for name, v in m.items()))
        plot_curves(result, out / f"{result['protocol']}-curves.png")
    write_text_atomic(out / f"{result['protocol']}.json", json.dumps(result, indent=2))
    click.echo("\n".join(lines))
