"""`netorigin embed`: training patches -> embeddings file (patients, labels, patch ids, 2048-d)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from netorigin.runtime.batch.cluster import DaskMapper, mapper_for
from netorigin.runtime.cli.options import cluster_options, mpp_rule, quiet_option, region_options, region_rules
from netorigin.runtime.progress import progress

from .embedder import WEIGHT_KINDS
from .embeddings import EmbedderSpec, cohort_patients, embed_manifest, embed_manifest_on
from .engines import ENGINES


def embedder_options(func):
    for option in reversed([
        click.option("--weights-kind", type=click.Choice(WEIGHT_KINDS), default="imagenet", show_default=True,
                     help="How to read --weights (random = seeded random init, for tests and demos)."),
        click.option("--weights", type=click.Path(dir_okay=False), default=None,
                     help="Local checkpoint file (nothing is downloaded)."),
        click.option("--weights-seed", type=click.IntRange(0), default=0, show_default=True,
                     help="Seed for --weights-kind random."),
    ]):
        func = option(func)
    return func


@click.command("embed")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Embeddings file to write (.npz).")
@embedder_options
@click.option("--patches-per-case", type=click.IntRange(1), default=100, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Patch-sampling seed (slide manifests).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--engine", type=click.Choice(ENGINES), default="torch", show_default=True,
              help="torch = PyTorch eager (reference); onnx = the exported embedder on ONNX Runtime (faster).")
@region_options
@cluster_options("one task per patient; workers must see the slides")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="PyTorch threads here and on every worker (equal counts give bit-identical embeddings).")
@quiet_option
def command(manifest, out, weights_kind, weights, weights_seed, patches_per_case, seed, batch_size, engine, include,
            exclude, object_types, mpp, force_mpp, cluster, threads, quiet) -> None:
    """Embed MANIFEST: patch images (patient,label,specimen,slide,path) or slides
    (case,label,specimen,slide,annotations), sampled exactly as the runtime samples."""
    start = time.perf_counter()
    spec = EmbedderSpec(weights_kind, weights, weights_seed, engine, batch_size, threads)
    embed, info = spec.build()  # here too: the file records the embedder, and a bad checkpoint fails before any task
    patients = len(cohort_patients(manifest))
    with mapper_for(cluster) as mapper, progress(patients, "patients", "patients", quiet) as step:
        sampling = dict(patches_per_case=patches_per_case, seed=seed,
                        rules=region_rules(include, exclude, object_types), mpp=mpp_rule(mpp, force_mpp),
                        progress=lambda _: step())
        if isinstance(mapper, DaskMapper):
            emb = embed_manifest_on(mapper, manifest, spec, info, **sampling)
        else:
            emb = embed_manifest(manifest, embed, info, **sampling)
    emb.info["cluster"] = mapper.access.as_record()
    emb.save(out)
    click.echo(f"{len(emb.embeddings)} patches of {len(set(emb.patients.tolist()))} patients -> {out} "
               f"({time.perf_counter() - start:.1f} s)")
