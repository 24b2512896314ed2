"""The ResNet50 patch embedder: torchvision architecture, `fc` = identity, weights from a local file.

Supported weights (method.md): ImageNet (torchvision state dict), RetCCL (`best_ckpt.pth`, torchvision
names without `fc`), MTDP (drop `head*` / `features.fc*`, strip `features.`), any torchvision-compatible
ResNet50 state dict, or seeded random weights for tests and demos.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

from netorigin.calibration.errors import InputDataError
from netorigin.runtime.model.record import EmbedderRecord

# A key of checkpoints written by `finetune`, beside "state_dict": the digests of the patients that trained them.
TRAINED_ON_KEY = "netorigin_trained_on_patients_sha256"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EMBEDDING_DIM = 2048
WEIGHT_KINDS = ("imagenet", "retccl", "mtdp", "state-dict", "random")


@dataclass(frozen=True)
class EmbedderInfo:
    """What the model metadata records about the embedder."""

    name: str
    weights_sha256: str
    weights_file: str | None  # the file's name only: a model never names a folder of the machine that built it
    seed: int | None
    # Digests of the patients whose patches trained these weights (`finetune` writes them into its checkpoint);
    # None for weights netorigin did not train (ImageNet, RetCCL, MTDP, random).
    trained_on_patients_sha256: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "weights_sha256": self.weights_sha256, "weights_file": self.weights_file,
                "seed": self.seed, "architecture": "torchvision resnet50, fc=Identity, 2048-d",
                "trained_on_patients_sha256": None if self.trained_on_patients_sha256 is None
                else list(self.trained_on_patients_sha256)}

    def record(self) -> EmbedderRecord:
        return EmbedderRecord(self.name, self.weights_sha256, self.trained_on_patients_sha256)


class PatchEmbedder(torch.nn.Module):
    """uint8 NHWC RGB patches -> 2048-d embeddings; normalisation is part of the module (and the graph)."""

    def __init__(self, trunk: torch.nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
        inv_std = 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", inv_std)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = patches.permute(0, 3, 1, 2).to(torch.float32)
        return self.trunk((x - self.mean) * self.inv_std)


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _state_dict_from_checkpoint(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputDataError("checkpoint is not a state dict of tensors", path)
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _adapt_keys(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    if kind == "mtdp":
        state = {k.removeprefix("features."): v for k, v in state.items()
                 if not (k.startswith("head") or k.startswith("features.fc"))}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _check_keys(trunk: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = trunk.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise InputDataError("checkpoint does not match torchvision ResNet50: " + "; ".join(parts), path)


def build_embedder(kind: str, weights: str | Path | None = None, seed: int = 0) -> tuple[PatchEmbedder, EmbedderInfo]:
    """A ResNet50 embedder in eval mode, and what the metadata should say about it."""
    if kind not in WEIGHT_KINDS:
        raise InputDataError(f"unknown weights kind {kind!r} (choose from {', '.join(WEIGHT_KINDS)})")
    if kind == "random":
        torch.manual_seed(seed)
    trunk = torchvision.models.resnet50(weights=None)
    trunk.fc = torch.nn.Identity()
    if kind == "random":
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in trunk.state_dict().values())).hexdigest()
        info = EmbedderInfo(name=f"resnet50-random(seed={seed})", weights_sha256=digest, weights_file=None,
                            seed=seed)
    else:
        if weights is None:
            raise InputDataError(f"weights kind {kind!r} needs --weights PATH (nothing is downloaded)")
        path = Path(weights)
        if not path.is_file():
            raise InputDataError("weights file not found", path)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for unreadable pickles
            raise InputDataError(f"cannot load checkpoint ({type(exc).__name__}: {str(exc)[:120]})", path) from None
        state = _adapt_keys(_state_dict_from_checkpoint(checkpoint, path), kind)
        _check_keys(trunk, state, path)
        trunk.load_state_dict(state, strict=True)
        trained = checkpoint.get(TRAINED_ON_KEY) if isinstance(checkpoint, dict) else None
        info = EmbedderInfo(name=f"resnet50-{kind}", weights_sha256=_file_sha256(path), weights_file=path.name,
                            seed=None, trained_on_patients_sha256=None if trained is None else tuple(trained))
    embedder = PatchEmbedder(trunk).eval()
    return embedder, info


@torch.inference_mode()
def embed_uint8(embedder: PatchEmbedder, patches: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Embeddings (float32 [N, 2048]) of uint8 NHWC patches with PyTorch, batch by batch."""
    out = np.empty((len(patches), EMBEDDING_DIM), dtype=np.float32)
    for start in range(0, len(patches), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(patches[start:start + batch_size]))
        out[start:start + len(batch)] = embedder(batch).numpy()
    return out
