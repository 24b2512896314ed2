"""`netorigin fit`: PCA + SVM (or another head) on the labelled patients' patch embeddings."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from netorigin.calibration.embeddings import Embeddings

from .heads import HEAD_KINDS, fit_embeddings, save_head


@click.command("fit")
@click.argument("embeddings", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Fitted head file to write (.joblib).")
@click.option("--head", "kind", type=click.Choice(HEAD_KINDS), default="reference", show_default=True,
              help="reference = PCA(0.95) + SVC(rbf, gamma='scale'); paper-text = SVC(rbf, gamma='auto'), no PCA.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
def command(embeddings, out, kind, seed) -> None:
    """Fit the patch classifier on EMBEDDINGS (labels 0 pancreas, 1 small intestine; others are skipped)."""
    start = time.perf_counter()
    emb = Embeddings.load(embeddings)
    pipeline = fit_embeddings(emb, kind, seed)
    mask = emb.labels < 2
    accuracy = float(np.mean((pipeline.decision_function(emb.embeddings[mask]) > 0) == emb.labels[mask]))
    info = dict(emb.fit_record(), head=kind, fit_seed=seed)
    save_head(out, pipeline, kind=kind, info=info)
    click.echo(f"fitted {kind} on {int(mask.sum())} patches: training patch accuracy {accuracy:.3f} -> {out} "
               f"({time.perf_counter() - start:.1f} s)")
