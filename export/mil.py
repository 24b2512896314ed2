"""Attention-MIL patient heads over the same patch embeddings (seed 001): ABMIL and KMIL.

Both read a bag of patch embeddings (a patient's sampled patches) and give one bag score S, > 0 = small intestine,
which the abstention band treats exactly like the SVM's sum. The bag classifier is linear in the attention-pooled
feature, so S splits exactly into per-patch contributions plus a bias: S = sum_i c_i + b. Those contributions are
the patches' `decision` values in reports, beside each patch's attention.

- ABMIL (Ilse et al. 2018): h = ReLU(W x), attention a = w . tanh(V h), alpha = softmax(a), logits = C (sum alpha h).
- KMIL (Zheng et al. 2024, this project's reading of its text): a patch MLP scores every patch; the key-recognition
  step keeps the hard patches, those whose patch probability q is near 0.5 (hard score 1 - 4 (q - 0.5)^2 >= t,
  t = 0.1 as in the paper's Table 4; all patches if none qualifies); attention pooling runs over the kept patches
  only; the bag logits add the attention-weighted patch logits to the pooled feature's (the two MLPs combined).
  Trained with the bag's cross-entropy plus the patches' cross-entropy against the patient label.

Training follows seed 001: cross-entropy, Adam (2e-4, weight decay 1e-5), cosine learning rate, one bag per step.
It is seeded and runs on the CPU, so the same seed and data give the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from netorigin.calibration.bands_io import PatientSum, bag_sum
from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.errors import InputDataError

MIL_KINDS = ("abmil", "kmil")
MASKED = -1e9  # attention logit of a patch the key-recognition step drops (softmax weight exactly 0)


@dataclass(frozen=True)
class MilConfig:
    """Explicit hyper-parameters: seed 001's optimiser, learning rate, weight decay and schedule, feature width 512
    as its ABMIL; 40 epochs where the paper ran 400 (a CPU budget for leave-one-out evaluation; `--mil-epochs`)."""

    hidden: int = 512
    attention: int = 128
    patch_hidden: int = 128
    key_threshold: float = 0.1
    dropout: float = 0.25
    epochs: int = 40
    learning_rate: float = 2e-4
    weight_decay: float = 1e-5
    instance_weight: float = 0.5


class AttentionMIL(torch.nn.Module):
    """ABMIL or KMIL over [N, D] embeddings; `forward` is what the ONNX graph computes."""

    def __init__(self, kind: str, config: MilConfig, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        if kind not in MIL_KINDS:
            raise InputDataError(f"unknown MIL head {kind!r} (choose from {', '.join(MIL_KINDS)})")
        self.kind, self.key_threshold = kind, config.key_threshold
        dim = int(mean.shape[0])
        # Standardisation is part of the head (and the graph): raw ResNet features are all >= 0 and badly scaled.
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.as_tensor(1.0 / std, dtype=torch.float32))
        self.reduce = torch.nn.Linear(dim, config.hidden)
        self.attention = torch.nn.Sequential(torch.nn.Linear(config.hidden, config.attention), torch.nn.Tanh(),
                                             torch.nn.Dropout(config.dropout),
                                             torch.nn.Linear(config.attention, 1))
        self.bag = torch.nn.Linear(config.hidden, 2)
        self.patch = (torch.nn.Sequential(torch.nn.Linear(config.hidden, config.patch_hidden), torch.nn.ReLU(),
                                          torch.nn.Linear(config.patch_hidden, 2)) if kind == "kmil" else None)

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = torch.relu(self.reduce((x - self.mean) * self.inv_std))
        logits = self.attention(h).squeeze(-1)
        patch_logits = self.patch(h) if self.patch is not None else None
        if patch_logits is not None:  # key recognition: drop the easy patches (confident either way)
            q = torch.sigmoid(patch_logits[:, 1] - patch_logits[:, 0]).detach()
            keep = (1.0 - 4.0 * (q - 0.5) ** 2) >= self.key_threshold
            keep = keep | ~keep.any()
            logits = torch.where(keep, logits, torch.full_like(logits, MASKED))
        return h, torch.softmax(logits, dim=0), patch_logits

    def bag_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Two-class bag logits (and KMIL's patch logits): what training's cross-entropy sees."""
        h, alpha, patch_logits = self._parts(x)
        logits = self.bag(alpha @ h)
        if patch_logits is not None:
            logits = logits + alpha @ patch_logits
        return logits, patch_logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Contributions c (float64 [N]), bag score S = sum c + b (float64 [1]), attention ([N], sums to 1)."""
        h, alpha, patch_logits = self._parts(x)
        per_patch = h @ (self.bag.weight[1] - self.bag.weight[0])
        if patch_logits is not None:
            per_patch = per_patch + (patch_logits[:, 1] - patch_logits[:, 0])
        contributions = (alpha * per_patch).to(torch.float64)
        bias = (self.bag.bias[1] - self.bag.bias[0]).to(torch.float64)
        return contributions, (contributions.sum() + bias).reshape(1), alpha


@dataclass
class MilHead:
    """A fitted MIL head as plain arrays (picklable without torch objects); scores bags like the exported graph."""

    kind: str
    config: MilConfig
    state: dict[str, np.ndarray]
    training: dict = field(default_factory=dict)

    def module(self) -> AttentionMIL:
        model = AttentionMIL(self.kind, self.config, self.state["mean"], 1.0 / self.state["inv_std"])
        model.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()})
        return model.eval()

    @property
    def n_parameters(self) -> int:
        return sum(int(v.size) for k, v in self.state.items() if k not in ("mean", "inv_std"))

    def describe(self) -> dict:
        return {"kind": self.kind, "parameters": self.n_parameters, "config": asdict(self.config),
                "training": self.training, "score": "bag"}

    @torch.inference_mode()
    def bag(self, embeddings: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Contributions, bag score and attention of one bag [N, D]."""
        c, s, a = self.module()(torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)))
        return c.numpy(), float(s[0]), a.numpy()

    def score(self, emb: Embeddings, on_patient: Callable[[], None] = lambda: None
              ) -> tuple[list[PatientSum], np.ndarray]:
        """Per patient (first-appearance order) S and one vote, the bag's sign; per patch its contribution."""
        model = self.module()
        sums, decisions = [], np.empty(len(emb.embeddings), dtype=np.float64)
        with torch.inference_mode():
            for patient, label, mask, bag in _bags(emb):
                c, s, _ = model(bag)
                decisions[mask] = c.numpy()
                sums.append(bag_sum(patient, label, float(s[0])))
                on_patient()
        return sums, decisions


def _bags(emb: Embeddings) -> Iterator[tuple[str, int, np.ndarray, torch.Tensor]]:
    """Each patient, its label, the mask of its patches and its bag as a float32 tensor."""
    for patient, mask in emb.by_patient():
        yield patient, int(emb.labels[mask][0]), mask, torch.from_numpy(
            np.ascontiguousarray(emb.embeddings[mask], dtype=np.float32))


def fit_mil(kind: str, emb: Embeddings, seed: int = 0, config: MilConfig = MilConfig()) -> MilHead:
    """Train on the pancreas / small-intestine patients of `emb` (one bag per patient), seeded, on the CPU."""
    labelled = emb.select(emb.labels < 2)
    bags = [(bag, label) for _, label, _, bag in _bags(labelled)]
    if {label for _, label in bags} != {0, 1}:
        raise InputDataError("fitting a MIL head needs pancreas and small-intestine patients")
    features = labelled.embeddings.astype(np.float64)
    mean, std = features.mean(axis=0), features.std(axis=0)
    std[std < 1e-6] = 1.0  # a feature constant in training is centred, not blown up (scikit-learn's rule)
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AttentionMIL(kind, config, mean.astype(np.float32), std.astype(np.float32))
        optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(config.epochs, 1))
        cross_entropy = torch.nn.CrossEntropyLoss()
        model.train()
        for _ in range(config.epochs):
            for index in rng.permutation(len(bags)):
                x, label = bags[index]
                target = torch.tensor([label])
                logits, patch_logits = model.bag_logits(x)
                loss = cross_entropy(logits[None], target)
                if patch_logits is not None:
                    loss = loss + config.instance_weight * cross_entropy(patch_logits, target.expand(len(x)))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            schedule.step()
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return MilHead(kind, config, state, {"seed": seed, "bags": len(bags), "optimiser": "Adam",
                                         "schedule": "CosineAnnealingLR", "loss": "cross-entropy"})
