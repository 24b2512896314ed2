"""Fine-tune the ResNet50 embedder on labelled H&E patches before extracting features (seed 003).

Seed 003's two steps: first a new 2-class layer is trained on the frozen network, then the chosen blocks are
unfrozen and trained together with it at a lower learning rate. Every patch carries its patient's label
(pancreas / small intestine); patients, never patches, are split into training and validation, so no patient is on
both sides. Batch-norm statistics stay frozen (small batches on a CPU would corrupt them). Augmentation is what
H&E allows without resampling: flips and 90-degree rotations. Everything random is seeded.

The result is a torchvision ResNet50 state dict (fc removed), which `embed`, `train` and `export` take with
`--weights-kind state-dict --weights FILE`, and a JSON record of the run.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from netorigin.calibration.errors import InputDataError
from netorigin.calibration.splits import patient_digests, stratified_split
from netorigin.runtime.atomic import write_bytes_atomic
from netorigin.runtime.progress import progress

from .embedder import EMBEDDING_DIM, TRAINED_ON_KEY, EmbedderInfo, PatchEmbedder
from .embeddings import CasePatches

TRAINABLE = ("fc", "layer4", "layer3", "all")


@dataclass(frozen=True)
class FinetunePlan:
    """Explicit parameters of one fine-tuning run."""

    train_fraction: float = 0.8
    head_epochs: int = 2
    epochs: int = 3
    head_learning_rate: float = 1e-3
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    batch_size: int = 16
    trainable: str = "layer4"
    seed: int = 0


@dataclass
class FinetuneResult:
    state_dict: dict[str, torch.Tensor]
    record: dict


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations of NHWC uint8 patches (exact pixels, no resampling)."""
    out = []
    for patch in batch:
        turns, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
        patch = torch.rot90(patch, turns, dims=(0, 1))
        out.append(torch.flip(patch, dims=(1,)) if flip % 2 else patch)
    return torch.stack(out)


def _unfreeze(embedder: PatchEmbedder, trainable: str) -> list[torch.nn.Parameter]:
    if trainable not in TRAINABLE:
        raise InputDataError(f"unknown --trainable {trainable!r} (choose from {', '.join(TRAINABLE)})")
    chosen = {"fc": (), "layer4": ("layer4",), "layer3": ("layer3", "layer4"), "all": None}[trainable]
    params = []
    for name, param in embedder.trunk.named_parameters():
        param.requires_grad = chosen is None or name.split(".")[0] in chosen
        if param.requires_grad:
            params.append(param)
    return params


def _freeze_batch_norm(module: torch.nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.eval()


def _accuracy(embedder: PatchEmbedder, classifier: torch.nn.Linear, pixels: np.ndarray, labels: np.ndarray,
              batch_size: int) -> float:
    if len(pixels) == 0:
        return float("nan")
    embedder.eval()
    right = 0
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            logits = classifier(embedder(torch.from_numpy(pixels[i:i + batch_size])))
            right += int((logits.argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return right / len(pixels)


def _epoch(embedder: PatchEmbedder, classifier: torch.nn.Linear, optimiser: torch.optim.Optimizer, pixels: np.ndarray,
           labels: np.ndarray, order: np.ndarray, batch_size: int, generator: torch.Generator,
           advance: Callable[[], None]) -> float:
    """One pass over the training patches in `order` (augmented); the mean training loss."""
    embedder.train()
    _freeze_batch_norm(embedder)
    cross_entropy = torch.nn.CrossEntropyLoss()
    total = 0.0
    for i in range(0, len(order), batch_size):
        pick = np.sort(order[i:i + batch_size])
        batch = _augment(torch.from_numpy(pixels[pick]), generator)
        loss = cross_entropy(classifier(embedder(batch)), torch.from_numpy(labels[pick]).long())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(pick)
        advance()
    return total / len(pixels)


def finetune(cases: list[CasePatches], embedder: PatchEmbedder, info: EmbedderInfo,
             plan: FinetunePlan = FinetunePlan(), echo=print, quiet: bool = True) -> FinetuneResult:
    """Two-step fine-tuning on the labelled cases (label 0/1; others are skipped); returns the new trunk. Unless
    `quiet`, a progress bar on a terminal counts the training batches of both steps."""
    labelled = [c for c in cases if c.label < 2]
    split = stratified_split([(c.patient, c.label) for c in labelled], plan.train_fraction, plan.seed)
    train_cases = [c for c in labelled if c.patient in set(split.fit)]
    val_cases = [c for c in labelled if c.patient in set(split.calibration)]
    if {c.label for c in train_cases} != {0, 1}:
        raise InputDataError("fine-tuning needs pancreas and small-intestine patients on the training side")
    x_train = np.concatenate([c.pixels for c in train_cases])
    y_train = np.concatenate([np.full(len(c.pixels), c.label) for c in train_cases])
    x_val = np.concatenate([c.pixels for c in val_cases]) if val_cases else np.zeros((0, 224, 224, 3), np.uint8)
    y_val = np.concatenate([np.full(len(c.pixels), c.label) for c in val_cases]) if val_cases else np.zeros(0)
    rng = np.random.default_rng(plan.seed)
    losses: list[dict] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        generator = torch.Generator().manual_seed(plan.seed)
        classifier = torch.nn.Linear(EMBEDDING_DIM, 2)
        batches = (plan.head_epochs + plan.epochs) * -(-len(x_train) // plan.batch_size)
        with progress(batches, "training", "batches", quiet) as advance:
            for step, (epochs, lr, trainable) in enumerate(((plan.head_epochs, plan.head_learning_rate, "fc"),
                                                            (plan.epochs, plan.learning_rate, plan.trainable)), 1):
                params = _unfreeze(embedder, trainable) + list(classifier.parameters())
                optimiser = torch.optim.Adam(params, lr=lr, weight_decay=plan.weight_decay)
                for epoch in range(epochs):
                    loss = _epoch(embedder, classifier, optimiser, x_train, y_train, rng.permutation(len(x_train)),
                                  plan.batch_size, generator, advance)
                    losses.append({"step": step, "epoch": epoch + 1, "train_loss": loss})
                    echo(f"step {step} ({trainable}) epoch {epoch + 1}: train loss {loss:.4f}")
                if step == 1:  # the honest baseline: a trained layer on the features before fine-tuning
                    frozen = _accuracy(embedder, classifier, x_val, y_val, plan.batch_size)
        after = _accuracy(embedder, classifier, x_val, y_val, plan.batch_size)
    for param in embedder.parameters():
        param.requires_grad = False
    embedder.eval()
    trained_on = sorted(set(patient_digests(split.fit)) | set(info.trained_on_patients_sha256 or ()))
    record = {"base_embedder": info.to_json(), "plan": asdict(plan), "split": split.to_json(),
              "trained_on_patients_sha256": trained_on,
              "train_patches": int(len(x_train)), "validation_patches": int(len(x_val)), "epochs": losses,
              "validation_patch_accuracy": {"frozen_features": frozen, "fine_tuned": after}}
    return FinetuneResult({k: v.detach().clone() for k, v in embedder.trunk.state_dict().items()}, record)


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], trained_on: list[str]) -> str:
    """{"state_dict": a torchvision ResNet50 state dict (fc removed), TRAINED_ON_KEY: digests of the patients whose
    patches trained it}, so every model built on it knows which patients may not calibrate or test it; returns the
    file's SHA-256, which models record as their weights."""
    buffer = io.BytesIO()
    torch.save({"state_dict": state_dict, TRAINED_ON_KEY: trained_on}, buffer)
    data = buffer.getvalue()
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()
