"""`netorigin compare-raters`: seed 002's Tables 1-4 from per-patient model results and the readers' calls."""

from __future__ import annotations

import json
from pathlib import Path

import click

from netorigin.calibration.errors import InputDataError
from netorigin.calibration.rater_tables import (
    evaluation_tables,
    read_model_results,
    read_reader_calls,
    readers_on,
    tables_markdown,
)
from netorigin.runtime.atomic import ensure_writable_dir, write_text_atomic


@click.command("compare-raters")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--readers", "reader_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV patient,call: the readers' consensus; used for every model whose patients and classes it "
                   "covers (seven-way calls count as benign / malignant for a binary model). Repeatable.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
def command(results: tuple[Path, ...], reader_files: tuple[Path, ...], out: Path) -> None:
    """Tables for each RESULTS CSV (patient,label,CLASS...: one score per class, e.g. the summed probabilities
    of the patient's image groups; the model is named by the file name): per-class AUC with DeLong's 95 % CI,
    sensitivity and specificity with Clopper-Pearson intervals, the readers with McNemar's exact p, DeLong's p
    between models on the same patients, and Cohen's kappa against the reference."""
    models = [read_model_results(path) for path in results]
    if len({m.name for m in models}) != len(models):
        raise click.UsageError("two result files have the same name: name each model's file differently")
    readers = {}
    for path in reader_files:
        calls = read_reader_calls(path)
        fitted = {m.name: r for m in models if (r := readers_on(calls, m, f"readers ({path.stem})")) is not None}
        if not fitted:
            raise InputDataError("these calls cover no model's patients and classes", path)
        readers |= fitted
    tables = evaluation_tables(models, readers)
    ensure_writable_dir(out)
    write_text_atomic(out / "tables.json", json.dumps(tables, indent=2))
    text = tables_markdown(tables)
    write_text_atomic(out / "tables.md", text)
    click.echo(text + f"-> {out / 'tables.json'}, {out / 'tables.md'}")
