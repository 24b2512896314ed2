"""The layering is enforced (import-linter), and a lean install says exactly which extra it lacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs `netorigin ARGV` in a child process in which the named top-level packages cannot be imported,
# as on an install without the extra that provides them.
WITHOUT = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
sys.argv = ["netorigin", *sys.argv[2:]]
from netorigin.runtime.cli import main
main()
"""


def run_without(blocked: tuple[str, ...], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT, ",".join(blocked), *map(str, argv)],
                          capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    """Layers export -> calibration -> runtime, no cycle inside a layer, no training library in the runtime, and
    slide and MRI cases never import each other."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint, "--no-logo", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_predict_without_onnxruntime_names_the_extras(tiny_model, slides):
    s = slides["svs20x"]
    result = run_without(("onnxruntime",), "predict", s.slide, "-a", s.annotations, "-m", tiny_model)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "netorigin[cpu]" in lines[0] and "netorigin[gpu]" in lines[0]


TRAINING_STACK = ("torch", "torchvision", "sklearn", "scipy", "matplotlib", "onnx", "skl2onnx", "joblib", "skops",
                  "tifffile")


def test_predict_without_training_stack_still_predicts(tiny_model, slides):
    s = slides["svs20x"]
    result = run_without(TRAINING_STACK, "predict", s.slide, "-a", s.annotations, "-m", tiny_model, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "case svs20x:" in result.stdout


def test_training_verb_without_its_extra_names_it(tmp_path):
    result = run_without(TRAINING_STACK, "fit", tmp_path / "emb.npz", "-o", tmp_path / "head.skops")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'netorigin fit' needs the export extra" in lines[0] and "pip install 'netorigin[export]'" in lines[0]
    assert not (tmp_path / "head.skops").exists()


def test_help_lists_every_verb_without_importing_torch():
    result = run_without(TRAINING_STACK, "--help")
    assert result.returncode == 0, result.stderr
    for verb in ("predict", "batch", "inspect", "embed", "fit", "calibrate", "evaluate", "export", "demo"):
        assert f"  {verb} " in result.stdout
    assert "one case (one or more slides) -> verdict" in result.stdout  # read from cli_predict's docstring
