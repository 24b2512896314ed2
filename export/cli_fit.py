"""`netorigin fit`: PCA + SVM (or another head, ABMIL / KMIL included) on the labelled patients' embeddings."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import click
import numpy as np

from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.labels import LABEL_NAMES
from netorigin.runtime.slide.verdict import verdict_from_sum

from .head_file import save_head
from .heads import ALL_HEADS, as_scorer, fit_embeddings
from .mil import MilConfig

HEAD_HELP = ("reference = PCA(0.95) + SVC(rbf, gamma='scale'); paper-text = SVC(rbf, gamma='auto'), no PCA; "
             "abmil / kmil = attention-MIL heads scoring each patient's bag (seed 001).")


def mil_options(function):
    """The MIL heads' training options (seed 001's recipe by default), shared by fit, train and evaluate."""
    defaults = MilConfig()

    @click.option("--mil-epochs", type=click.IntRange(1), default=defaults.epochs, show_default=True,
                  help="ABMIL / KMIL: epochs (one bag per step, Adam, cosine learning rate).")
    @click.option("--mil-hidden", type=click.IntRange(1), default=defaults.hidden, show_default=True,
                  help="ABMIL / KMIL: width of the reduced patch feature.")
    @click.option("--key-threshold", type=click.FloatRange(0, 1), default=defaults.key_threshold,
                  show_default=True, help="KMIL: patches with a hard-sample score below this are not pooled.")
    @functools.wraps(function)
    def wrapper(*args, mil_epochs: int, mil_hidden: int, key_threshold: float, **kwargs):
        config = MilConfig(epochs=mil_epochs, hidden=mil_hidden, key_threshold=key_threshold)
        return function(*args, mil=config, **kwargs)

    return wrapper


@click.command("fit")
@click.argument("embeddings", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Fitted head file to write (.skops: pickle-free).")
@click.option("--head", "kind", type=click.Choice(ALL_HEADS), default="reference", show_default=True,
              help=HEAD_HELP)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@mil_options
def command(embeddings, out, kind, seed, mil) -> None:
    """Fit the head on EMBEDDINGS (labels 0 pancreas, 1 small intestine; others are skipped)."""
    start = time.perf_counter()
    emb = Embeddings.load(embeddings)
    fitted = fit_embeddings(emb, kind, seed, mil)
    scorer = as_scorer(fitted)
    labelled = emb.select(emb.labels < 2)
    sums, decisions = scorer.score(labelled)
    patch_accuracy = float(np.mean((decisions > 0) == labelled.labels))
    patient_accuracy = float(np.mean([verdict_from_sum(s.s, s.votes_small_intestine, s.n_patches, None)
                                      == LABEL_NAMES[s.label] for s in sums]))
    info = dict(emb.fit_record(), head=kind, fit_seed=seed)
    save_head(out, fitted, kind=kind, info=info)
    click.echo(f"fitted {kind} on {len(labelled.embeddings)} patches: training patch accuracy {patch_accuracy:.3f}, "
               f"patient accuracy {patient_accuracy:.3f} ({len(sums)} patients) -> {out} "
               f"({time.perf_counter() - start:.1f} s)")
