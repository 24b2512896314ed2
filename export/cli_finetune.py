"""`netorigin finetune`: fine-tune the ResNet50 on labelled patches (seed 003), for `embed` / `train` / `export`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from netorigin.runtime.atomic import write_text_atomic
from netorigin.runtime.cli.options import mpp_rule, quiet_option, region_options, region_rules
from netorigin.runtime.progress import progress, say
from netorigin.runtime.slide.sampling import PatchGeometry

from .cli_embed import embedder_options
from .embedder import build_embedder
from .embeddings import check_slides, cohort_patients, is_patch_manifest, iter_cohort
from .finetune import TRAINABLE, FinetunePlan, finetune, save_checkpoint


@click.command("finetune")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint to write (.pt, a torchvision ResNet50 state dict); a NAME.json record beside it.")
@embedder_options
@click.option("--patches-per-case", type=click.IntRange(1), default=100, show_default=True,
              help="Patches sampled per patient (slide manifests; patch folders use every listed patch).")
@click.option("--train-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, help="Share of patients that train (stratified); the rest validate.")
@click.option("--head-epochs", type=click.IntRange(0), default=2, show_default=True,
              help="Step 1: epochs of the new 2-class layer on the frozen network.")
@click.option("--epochs", type=click.IntRange(0), default=3, show_default=True,
              help="Step 2: epochs with --trainable unfrozen.")
@click.option("--trainable", type=click.Choice(TRAINABLE), default="layer4", show_default=True,
              help="What step 2 unfreezes (layer3 = layer3 and layer4).")
@click.option("--learning-rate", type=float, default=1e-4, show_default=True, help="Step 2 (Adam).")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seeds patch sampling, the patient split, the new layer, batch order and augmentation.")
@region_options
@quiet_option
def command(manifest, out, weights_kind, weights, weights_seed, patches_per_case, train_fraction, head_epochs,
            epochs, trainable, learning_rate, batch_size, seed, include, exclude, object_types, mpp,
            force_mpp, quiet) -> None:
    """Fine-tune on MANIFEST (slide manifest case,label,specimen,slide,annotations or patch manifest
    patient,label,specimen,slide,path; labels pancreas / small intestine, others are skipped)."""
    if out.suffix == ".json":
        raise click.UsageError("--out is the checkpoint (.pt); its JSON record is written beside it")
    start = time.perf_counter()
    rules, mpp_rules = region_rules(include, exclude, object_types), mpp_rule(mpp, force_mpp)
    if not is_patch_manifest(manifest):
        check_slides(manifest, PatchGeometry(), mpp_rules, rules)  # every slide, before any output
    embedder, info = build_embedder(weights_kind, weights, weights_seed)
    cases = []
    with progress(len(cohort_patients(manifest)), "patients", "patients", quiet) as step:
        for case in iter_cohort(manifest, patches_per_case, seed, rules=rules, mpp=mpp_rules):
            cases.append(case)
            step()
    plan = FinetunePlan(train_fraction=train_fraction, head_epochs=head_epochs, epochs=epochs,
                        learning_rate=learning_rate, batch_size=batch_size, trainable=trainable, seed=seed)
    result = finetune(cases, embedder, info, plan, echo=say, quiet=quiet)
    digest = save_checkpoint(out, result.state_dict, result.record["trained_on_patients_sha256"])
    record = result.record | {"checkpoint": str(out), "checkpoint_sha256": digest, "manifest": str(manifest),
                              "use_with": f"--weights-kind state-dict --weights {out}",
                              "note": "the checkpoint carries its training patients' digests: train, calibrate and "
                                      "evaluate refuse them as calibration or test patients"}
    write_text_atomic(out.with_suffix(".json"), json.dumps(record, indent=2))
    accuracy = record["validation_patch_accuracy"]
    click.echo(f"fine-tuned ({trainable}) on {record['train_patches']} patches; validation patch accuracy "
               f"{accuracy['frozen_features']:.3f} (frozen features, trained layer) -> {accuracy['fine_tuned']:.3f} "
               f"-> {out} ({time.perf_counter() - start:.1f} s)")
