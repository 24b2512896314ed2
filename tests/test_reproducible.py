"""Reproducible builds: the same inputs give byte-identical models from any install folder (the exporter's stack
traces, which name the folder, and the build time are not shipped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import netorigin.calibration
import netorigin.export
import netorigin.runtime

BUILD = textwrap.dedent("""
    import hashlib, sys
    import netorigin.export
    from netorigin.export.smoke import build_smoke_model, tiny_embedder
    embedder, info = tiny_embedder()
    path = build_smoke_model(__import__("pathlib").Path(sys.argv[1]), embedder, info)
    data = path.read_bytes()
    print(netorigin.export.__file__, hashlib.sha256(data).hexdigest(), b"stack_trace" in data,
          netorigin.export.__file__.rsplit("/export/", 1)[0].encode() in data)
""")


def _install_copy(root: Path) -> Path:
    for package in (netorigin.export, netorigin.runtime, netorigin.calibration):
        shutil.copytree(Path(package.__path__[0]), root / "netorigin" / package.__name__.split(".")[-1],
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_two_install_folders_build_byte_identical_models(tmp_path):
    results = []
    for name in ("a", "b"):
        root = _install_copy(tmp_path / name)
        done = subprocess.run([sys.executable, "-c", BUILD, str(root / "model.onnx")], cwd=root, text=True,
                              env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr
        results.append(done.stdout.split())
    (file_a, digest_a, traces_a, names_a), (file_b, digest_b, traces_b, names_b) = results
    assert file_a.startswith(str(tmp_path / "a")) and file_b.startswith(str(tmp_path / "b"))  # really two folders
    assert digest_a == digest_b  # the whole file, metadata included
    assert traces_a == traces_b == "False" and names_a == names_b == "False"
