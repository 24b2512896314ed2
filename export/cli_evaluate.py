"""`netorigin evaluate`: the paper's protocols on embeddings for one or more heads, side by side with each head's
cost per case; JSON, confusion tables and curve PNGs."""

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
from netorigin.calibration.protocols import (
    PREDICTED,
    binary_external,
    binary_folds,
    binary_loo,
    extended_folds,
    extended_loo,
    external_test,
)
from netorigin.calibration.splits import EMBEDDER_ROLE, in_sample, refuse_in_sample
from netorigin.runtime.atomic import ensure_writable_dir, write_text_atomic
from netorigin.runtime.batch.cluster import mapper_for
from netorigin.runtime.cli.options import cluster_options, quiet_option
from netorigin.runtime.model.contract import parse_confidence
from netorigin.runtime.progress import CountingMapper, progress
from netorigin.runtime.slide.verdict import UNCERTAIN

from .cli_fit import mil_options
from .costs import head_cost
from .heads import ALL_HEADS, fit_scorer

PROTOCOLS = ("binary", "binary-external", "extended", "external")
PATCH_ACCURACY = ("patch-sum heads: the patch classifier's sign; MIL heads: the sign of each pooled patch's "
                  "contribution to S (a MIL head has no patch classifier of its own)")


def confusion_text(confusion: dict) -> str:
    header = f"{'true / called':<18}" + "".join(f"{p:>17}" for p in PREDICTED)
    rows = [f"{t:<18}" + "".join(f"{n:>17}" for n in row.values()) for t, row in confusion.items()]
    return "\n".join([header, *rows])


def _nearest_column(result: dict, confidence: float) -> str:
    return min(result["confusion"], key=lambda key: abs(float(key) - confidence))


def comparison_row(result: dict, cost: dict, confidence: float) -> dict:
    """One head's line of the side-by-side table: its accuracy figures and its cost per case."""
    row = {"head": result["head"], "parameters": cost["parameters"], "flops_per_case": cost["flops_per_case"],
           "time_per_case_ms": cost["time_per_case_ms"]["median"]}
    if "patient_accuracy" in result:
        return row | {"patch_accuracy": result["patch_accuracy"], "patient_accuracy": result["patient_accuracy"]}
    key = _nearest_column(result, confidence)
    table = result["confusion"][key]
    labelled = [t for t in table if t != "other"]
    called = sum(table[t][p] for t in labelled for p in PREDICTED if p != UNCERTAIN)
    right = sum(table[t][t] for t in labelled)
    others = sum(table["other"].values())
    n_labelled = sum(sum(table[t].values()) for t in labelled)
    return row | {"c": float(key), "accuracy_of_calls": right / called if called else float("nan"),
                  "labelled_uncertain": (sum(table[t][UNCERTAIN] for t in labelled) / n_labelled
                                         if n_labelled else float("nan")),
                  "others_uncertain": table["other"][UNCERTAIN] / others if others else float("nan")}


def comparison_text(rows: list[dict]) -> str:
    binary = "patient_accuracy" in rows[0]
    figures = ("patch acc", "patient acc") if binary else ("c", "acc of calls", "PI uncertain", "other uncertain")
    header = f"{'head':<12}" + "".join(f"{f:>16}" for f in figures) + f"{'params':>12}{'MFLOPs/case':>14}" \
             f"{'ms/case':>10}"
    lines = [header]
    for r in rows:
        values = ((r["patch_accuracy"], r["patient_accuracy"]) if binary else
                  (r["c"], r["accuracy_of_calls"], r["labelled_uncertain"], r["others_uncertain"]))
        lines.append(f"{r['head']:<12}" + "".join(f"{v:>16.3f}" for v in values)
                     + f"{r['parameters']:>12,}{r['flops_per_case'] / 1e6:>14.1f}{r['time_per_case_ms']:>10.2f}")
    return "\n".join(lines)


def _already_fitted(fitted, _emb: Embeddings, _seed: int):
    return fitted


def _run(protocol: str, emb: Embeddings, external: Embeddings | None, head: str, fit, seed: int, mapper) -> dict:
    if protocol == "binary":
        return binary_loo(emb, fit, head, seed, mapper=mapper)
    if protocol == "binary-external":
        return binary_external(emb, external, fit, head, seed)
    if protocol == "extended":
        return extended_loo(emb, fit, head, seed, mapper=mapper)
    return external_test(emb, external, fit, head, seed)


def _detail_lines(result: dict, confidence: tuple[str, ...], out: Path, stem: str) -> list[str]:
    if "patient_accuracy" in result:
        return [f"patch accuracy {result['patch_accuracy']:.3f}, patient accuracy {result['patient_accuracy']:.3f}"]
    lines = []
    result["metrics"] = {}
    for level in confidence:
        key = _nearest_column(result, parse_confidence(level))
        result["metrics"][key] = class_metrics(result["confusion"][key])
        lines += ["", f"c = {key}", confusion_text(result["confusion"][key])]
        for cls, m in result["metrics"][key].items():
            lines.append(f"  {cls}: " + ", ".join(
                f"{name} {v['value']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
                if not math.isnan(v["value"]) else f"{name} n/a" for name, v in m.items()))
    plot_curves(result, out / f"{stem}-curves.png")
    return lines


@click.command("evaluate")
@click.argument("embeddings", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="extended", show_default=True,
              help="binary: leave-one-out, majority vote; binary-external: the paper's Table 3 (fit on every "
                   "labelled patient, accuracy on --external, no bands); extended: leave-one-out with bands; "
                   "external: fit and bands on EMBEDDINGS, applied unchanged to --external.")
@click.option("--external", "external_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Embeddings of the external cohort (protocols external and binary-external).")
@click.option("--head", "heads", multiple=True, type=click.Choice((*ALL_HEADS, "all")), default=("reference",),
              show_default=True, help="Head to evaluate; repeat for a side-by-side table (e.g. --head reference "
                                      "--head abmil --head kmil); all = every head.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--confidence", "-c", multiple=True, default=("0", "0.875", "1"), show_default=True,
              help="Confidence levels to report in detail (nearest column); the first non-zero one is the "
                   "comparison table's.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
@cluster_options("one task per fold (binary, extended)")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Folds in parallel in this many processes on this machine (needs the dask extra).")
@click.option("--allow-in-sample", is_flag=True,
              help="RESEARCH ONLY: evaluate on patients whose patches trained the embedder (finetune); optimistic.")
@mil_options
@quiet_option
def command(embeddings, protocol, external_path, heads, seed, confidence, out, cluster, workers, allow_in_sample,
            mil, quiet) -> None:
    """Evaluate on EMBEDDINGS as the papers do (every random step seeded)."""
    if cluster.scheduler and workers > 1:
        raise click.UsageError("give --scheduler (a cluster) or --workers (processes here), not both")
    if protocol in ("external", "binary-external") and external_path is None:
        raise click.UsageError(f"--protocol {protocol} needs --external EMBEDDINGS")
    emb = Embeddings.load(embeddings)
    external = Embeddings.load(external_path) if external_path is not None else None
    tested = external if protocol in ("external", "binary-external") else emb
    leaked = in_sample([p for p, _ in tested.patient_table()], None, tested.embedder_trained_on)
    refuse_in_sample(leaked, allow_in_sample, external_path if tested is external else embeddings, EMBEDDER_ROLE)
    if cluster.scheduler is None:
        ensure_writable_dir(out)  # before any local worker process starts
    with mapper_for(cluster, workers=workers) as runner:  # a remote cluster that may not be used: refused first
        ensure_writable_dir(out)
        _evaluate(emb, external, tested, leaked, protocol, heads, seed, confidence, out, runner, mil, quiet)


def _evaluate(emb: Embeddings, external: Embeddings | None, tested: Embeddings, leaked: list, protocol: str,
              heads: tuple[str, ...], seed: int, confidence: tuple[str, ...], out: Path, runner, mil, quiet: bool
              ) -> None:
    """Each head's folds on `runner` (here or on the cluster), its tables and curves under `out`."""
    if leaked:
        click.echo(f"WARNING: {len(leaked)} test patients trained the embedder: research only, optimistic")
    heads = ALL_HEADS if "all" in heads else tuple(dict.fromkeys(heads))
    table_confidence = next((parse_confidence(c) for c in confidence if parse_confidence(c) > 0), 1.0)
    rows, lines = [], []
    folds = {"binary": binary_folds, "extended": extended_folds}.get(protocol)  # the protocols that run folds
    with progress(len(folds(emb)) * len(heads) if folds else 0, "folds", "folds", quiet) as step:
        mapper = CountingMapper(runner, step)
        for head in heads:
            start = time.perf_counter()
            fit = partial(fit_scorer, head, mil=mil)
            fitted = fit(emb, seed)  # on every labelled patient: the head the cost line times
            if protocol == "binary-external":  # that very head is what this protocol fits
                fit = partial(_already_fitted, fitted)
            result = _run(protocol, emb, external, head, fit, seed, mapper)
            result["wall_time_s"] = round(time.perf_counter() - start, 2)
            stem = result["protocol"] if len(heads) == 1 else f"{result['protocol']}-{head}"
            lines += ["", f"{result['protocol']}: {len(result['patients'])} patients, head {head}, seed {seed}, "
                          f"{result['wall_time_s']} s", *_detail_lines(result, confidence, out, stem)]
            result["cost"] = head_cost(fitted)
            result["cluster"] = runner.access.as_record()
            rows.append(comparison_row(result, result["cost"], table_confidence))
            write_text_atomic(out / f"{stem}.json", json.dumps(result, indent=2))
    comparison = {"protocol": protocol, "seed": seed, "rows": rows, "patch_accuracy_means": PATCH_ACCURACY,
                  "cost_measured": "head only, fitted on every labelled patient of EMBEDDINGS; ONNX Runtime CPU, "
                                   "median of 7 cases of 100 patches"}
    write_text_atomic(out / f"{protocol}-comparison.json", json.dumps(comparison, indent=2))
    click.echo("\n".join([*lines[1:], "", comparison_text(rows)]
                          + ([f"patch acc: {PATCH_ACCURACY}"] if "patient_accuracy" in rows[0] else [])))
