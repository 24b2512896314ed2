"""Training side through the CLI and the checkpoint formats the embedder accepts."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from netorigin.calibration.errors import InputDataError
from netorigin.export.embedder import build_embedder, embed_uint8
from netorigin.runtime.model.contract import load_contract

from .helpers import run_cli


@pytest.fixture(scope="module")
def reference_state():
    torch.manual_seed(3)
    net = torchvision.models.resnet50(weights=None)
    return net.state_dict()  # torchvision names, with the 1000-class fc (ImageNet layout)


def _probe(embedder) -> np.ndarray:
    patches = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    return embed_uint8(embedder, patches)


def test_imagenet_retccl_and_mtdp_layouts_load_to_the_same_network(tmp_path, reference_state):
    imagenet = tmp_path / "imagenet.pth"
    torch.save(reference_state, imagenet)
    retccl = tmp_path / "best_ckpt.pth"
    torch.save({k: v for k, v in reference_state.items() if not k.startswith("fc.")}, retccl)
    mtdp = tmp_path / "mtdp.pth"
    mtdp_state = {f"features.{k}": v for k, v in reference_state.items() if not k.startswith("fc.")}
    mtdp_state.update({"head.weight": torch.zeros(2, 2048), "features.fc.weight": torch.zeros(3, 2048)})
    torch.save(mtdp_state, mtdp)
    outputs = []
    for kind, path in (("imagenet", imagenet), ("retccl", retccl), ("mtdp", mtdp), ("state-dict", imagenet)):
        embedder, info = build_embedder(kind, path)
        assert info.weights_file == path.name and len(info.weights_sha256) == 64
        outputs.append(_probe(embedder))
    for other in outputs[1:]:
        np.testing.assert_array_equal(outputs[0], other)
    assert outputs[0].shape == (2, 2048) and (outputs[0] >= 0).all()


def test_mismatched_checkpoint_lists_what_did_not_match(tmp_path, reference_state):
    bad = dict(reference_state)
    bad["layer1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    bad["extra.bias"] = torch.zeros(1)
    del bad["layer4.2.bn3.running_var"]
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(InputDataError) as exc:
        build_embedder("imagenet", path)
    message = str(exc.value)
    assert "missing: layer4.2.bn3.running_var" in message and "unexpected: extra.bias" in message
    assert "wrong shape: layer1.0.conv1.weight" in message and str(path) in message
    with pytest.raises(InputDataError, match="needs --weights"):
        build_embedder("imagenet", None)
    path.write_text("not a checkpoint")
    with pytest.raises(InputDataError, match="cannot load checkpoint"):
        build_embedder("imagenet", path)


@pytest.mark.slow
def test_embed_fit_calibrate_export_commands(monkeypatch, capsys, tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for p, label in enumerate(["pancreas"] * 3 + ["small_intestine"] * 3 + ["other"] * 2):
        for k in range(3):
            img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8) // (2 if label == "pancreas" else 1)
            name = f"p{p}_{k}.png"
            Image.fromarray(img).save(tmp_path / name)
            rows.append({"patient": f"p{p}", "label": label, "specimen": "A", "slide": f"s{p}", "path": name})
    manifest = tmp_path / "patches.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, out, err = run_cli(monkeypatch, capsys, "embed", manifest, "-o", tmp_path / "emb.npz",
                             "--weights-kind", "random", "--patches-per-case", "3")
    assert code == 0, err
    assert "24 patches of 8 patients -> " in out
    code, out, err = run_cli(monkeypatch, capsys, "fit", tmp_path / "emb.npz", "-o", tmp_path / "head.skops")
    assert code == 0, err
    assert "fitted reference on 18 patches: training patch accuracy " in out
    # The head was fitted on these very patients: in-sample bands are refused, naming them ...
    code, out, err = run_cli(monkeypatch, capsys, "calibrate", "--embeddings", tmp_path / "emb.npz", "--head",
                             tmp_path / "head.skops", "-o", tmp_path / "bands.json")
    assert code == 1
    assert "6 calibration patient(s) also fitted the head: p0, p1, p2, p3, p4, p5" in err
    assert not (tmp_path / "bands.json").exists()
    # ... unless research use is explicit, which the output states.
    code, out, err = run_cli(monkeypatch, capsys, "calibrate", "--embeddings", tmp_path / "emb.npz", "--head",
                             tmp_path / "head.skops", "-o", tmp_path / "bands.json", "--allow-in-sample")
    assert code == 0, err
    assert "WARNING: in-sample bands" in out
    assert len(json.loads((tmp_path / "bands.json").read_text())["bands"]) == 3
    code, out, err = run_cli(monkeypatch, capsys, "export", "--head", tmp_path / "head.skops",
                             "--weights-kind", "random", "-o", tmp_path / "m.onnx")
    assert code != 0 and "--no-bands" in err
    code, out, err = run_cli(monkeypatch, capsys, "export", "--head", tmp_path / "head.skops", "--weights-kind",
                             "random", "--weights-seed", "5", "--bands", tmp_path / "bands.json", "-o",
                             tmp_path / "m.onnx")
    assert code != 0 and "different embedder weights" in err  # seed 5 is not the seed-0 embedder
    code, out, err = run_cli(monkeypatch, capsys, "export", "--head", tmp_path / "head.skops", "--weights-kind",
                             "random", "--no-bands", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    assert "[no bands: majority vote only]" in out
    contract = load_contract(tmp_path / "m.onnx")
    assert contract.bands == [] and contract.default_confidence is None and contract.patches_per_case == 3
    assert contract.provenance["embedder"]["name"] == "resnet50-random(seed=0)"
