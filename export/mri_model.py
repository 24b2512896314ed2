"""Seed 002's network: a timm backbone (Inception-ResNet-v2 by default) taking one channel per sequence, its pooled
features joined by the encoded clinical record (Models F/G) before one fully connected layer; and its export to
one ONNX file that carries the MRI contract (runtime/mri/contract).

Weights: ImageNet (or any timm-compatible checkpoint) only from a local file, the first convolution adapted to
the sequences by timm; random (seeded) otherwise. No download ever.
"""

from __future__ import annotations

import hashlib
import importlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from netorigin.calibration.errors import InputDataError
from netorigin.runtime.model.contract import FAMILY_KEY, MRI_FAMILY, PREFIX, with_metadata
from netorigin.runtime.mri.clinical import ClinicalField, encoded_width, encoding_to_json
from netorigin.runtime.mri.contract import (
    CLINICAL_INPUT,
    IMAGE_INPUT,
    MRI_SCHEMA_VERSION,
    PATIENT_RULE,
    PROBABILITY_OUTPUT,
)
from netorigin.runtime.mri.groups import CLIP, SCALE_PERCENTILE
from netorigin.runtime.mri.protocol import IMAGE_SIZE, SPACING_MM, ModelKind

from .onnx_graph import strip_build_traces

DEFAULT_ARCHITECTURE = "inception_resnet_v2"
ROI_RULE = ("region drawn on T2; every sequence resampled (linear) and the region (nearest neighbour) onto the T2's "
            "origin and direction at 0.7 x 0.7 x 7 mm; each 7-mm section the region touches is one group, the "
            "whole section, one channel per sequence")


class LesionNet(torch.nn.Module):
    """Images [N, sequences, 299, 299] (+ clinical [N, width]) -> class logits; `forward` gives probabilities."""

    def __init__(self, backbone: torch.nn.Module, classes: int, clinical_width: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.clinical_width = clinical_width
        # timm's pooled output is `head_hidden_size` where the model has a pre-logits layer, else `num_features`
        width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.fc = torch.nn.Linear(width + clinical_width, classes)

    def logits(self, images: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        features = self.backbone(images)
        if self.clinical_width:
            features = torch.cat([features, clinical], dim=1)
        return self.fc(features)

    def forward(self, images: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.logits(images, clinical), dim=1)


def _timm() -> Any:
    try:
        return importlib.import_module("timm")
    except ModuleNotFoundError:
        raise InputDataError("MRI models need timm: pip install 'netorigin[export,mri]'") from None


def build_lesion_net(kind: ModelKind, architecture: str = DEFAULT_ARCHITECTURE, weights: str | Path | None = None,
                     seed: int = 0, clinical: tuple[ClinicalField, ...] | None = None) -> tuple[LesionNet, dict]:
    """The network for `kind` and what the model record says about it (architecture, weights file digest)."""
    timm = _timm()
    if architecture not in timm.list_models():
        raise InputDataError(f"unknown timm architecture {architecture!r}")
    overlay = None
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise InputDataError("weights file not found", weights)
        overlay = {"file": str(weights), "num_classes": 0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            backbone = timm.create_model(architecture, pretrained=weights is not None, num_classes=0,
                                         in_chans=len(kind.sequences), pretrained_cfg_overlay=overlay)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise InputDataError(f"the weights do not fit {architecture} ({str(exc).splitlines()[0][:160]})",
                                 weights) from None
        width = encoded_width(clinical) if kind.clinical and clinical else 0
        net = LesionNet(backbone, len(kind.classes), width)
    record = {"architecture": architecture, "timm": timm.__version__, "init_seed": seed,
              "weights": None if weights is None else {"file": weights.name,
                                                       "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}}
    return net.eval(), record


def export_lesion_onnx(net: LesionNet, channels: int) -> onnx.ModelProto:
    """The network as one ONNX graph: images (+ clinical) in, probabilities out, any number of groups."""
    net = net.eval()
    images = torch.zeros(2, channels, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.export.Dim("groups", min=1, max=4096)
    args: tuple = (images,)
    names, shapes = [IMAGE_INPUT], {"images": {0: batch}}
    if net.clinical_width:
        args += (torch.zeros(2, net.clinical_width),)
        names.append(CLINICAL_INPUT)
        shapes["clinical"] = {0: batch}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, args, dynamo=True, external_data=False, input_names=names,
                                    output_names=[PROBABILITY_OUTPUT], dynamic_shapes=shapes, verbose=False)
    model = program.model_proto
    strip_build_traces(model)
    return model


def mri_metadata(kind: ModelKind, clinical: tuple[ClinicalField, ...] | None, record: dict[str, Any],
                 provenance: dict[str, Any]) -> dict[str, Any]:
    """The decoded MRI contract (digests are added by `with_metadata`)."""
    return {
        PREFIX + "schema": MRI_SCHEMA_VERSION, FAMILY_KEY: MRI_FAMILY,
        PREFIX + "classes": list(kind.classes),
        PREFIX + "inputs": {"kind": kind.name, "sequences": list(kind.sequences), "spacing_mm": list(SPACING_MM),
                            "image_size": IMAGE_SIZE, "scaling": {"percentile": SCALE_PERCENTILE, "clip": CLIP},
                            "roi_rule": ROI_RULE},
        PREFIX + "clinical": encoding_to_json(clinical) if kind.clinical and clinical else None,
        PREFIX + "patient_rule": PATIENT_RULE,
        PREFIX + "precision": {"precision": "fp32"},
        PREFIX + "record": record,
        PREFIX + "provenance": provenance,
    }


def lesion_model_bytes(net: LesionNet, kind: ModelKind, clinical: tuple[ClinicalField, ...] | None,
                       record: dict[str, Any], provenance: dict[str, Any]) -> bytes:
    graph = export_lesion_onnx(net, len(kind.sequences)).SerializeToString()
    return with_metadata(graph, mri_metadata(kind, clinical, record, provenance))


def probabilities(net: LesionNet, pixels: np.ndarray, clinical: np.ndarray | None, batch: int = 16) -> np.ndarray:
    """PyTorch's probabilities for image groups (float32), the reference the ONNX model is checked against."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch):
            images = torch.from_numpy(pixels[start:start + batch])
            extra = None if clinical is None else torch.from_numpy(
                np.repeat(clinical[None, :], len(images), axis=0))
            out.append(net(images, extra).numpy())
    return np.concatenate(out)
