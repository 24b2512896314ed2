"""The prepared GPU run (benchmarks/gpu_stage.py here, benchmarks/gpu.sh there), dry-run end to end on the CPU so
it cannot rot before a device machine is lent: staged in parts, reassembled and checked, every stage measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from netorigin.export.smoke import build_smoke_model, tiny_embedder
from netorigin.export.synthetic import make_cohort
from netorigin.runtime.engines.session import CPU_BATCH

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_script_runs_on_the_cpu_as_it_would_on_the_device(tmp_path, tiny_model):
    embedder, info = tiny_embedder()
    fp16 = build_smoke_model(tmp_path / "tiny-fp16.onnx", embedder, info, patches_per_case=20, with_bands=False,
                             precision="fp16")
    manifest = make_cohort(tmp_path / "cohort", {"pancreas": 1, "small_intestine": 1}, seed=3, mpps=(0.5,),
                           size_um=(1400, 1200), multi_slide_every=0)
    stage = tmp_path / "stage"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "gpu_stage.py", "-m", tiny_model, "-m", fp16,
                    "--manifest", manifest, "--no-wheels", "--out", stage, "--part-mib", "1"], check=True,
                   capture_output=True)
    assert len(list(stage.glob("p*/part"))) >= 2  # the payload travels in parts
    out = tmp_path / "out"
    done = subprocess.run(["bash", ROOT / "benchmarks" / "gpu.sh", stage, "--device", "cpu", "--batches", "8",
                           "--workers", "1", "2", "--repeat", "1"],
                          env=os.environ | {"OUT": str(out), "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "gpu.json").read_text())
    assert record["device"] == "cpu" and record["cohort_cases"] == 2
    rows = {row["configuration"]: row for row in record["throughput"]["configurations"]}
    assert set(rows) == {"0-tiny.onnx (fp32) on onnxruntime cpu", "1-tiny-fp16.onnx (fp16) on onnxruntime cpu"}
    assert all(set(row["patches_per_s"]) == {"8", str(CPU_BATCH)} and row["case_open_to_verdict_s"]["n"] == 5
               for row in rows.values())
    fp32, half = record["parity"]
    assert (fp32["verdict_flips"], fp32["max_abs_dS"], fp32["cases"]) == (0, 0.0, 2)  # same model, same provider
    assert half["precision"] == "fp16" and half["max_abs_dS"] > 0
    for row in record["cases_per_s"]:
        assert row["cases"] == 2 and set(row["cases_per_s"]) == {"1", "2"}
        assert all(s["n"] == 5 and s["min"] <= s["median"] <= s["max"] for s in row["cases_per_s"].values())
    assert record["tensorrt"] == {"listed": False}


def test_a_part_that_does_not_match_its_checksum_stops_the_run(tmp_path, tiny_model):
    manifest = make_cohort(tmp_path / "cohort", {"pancreas": 1}, seed=3, mpps=(0.5,), size_um=(1400, 1200),
                           multi_slide_every=0)
    stage = tmp_path / "stage"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "gpu_stage.py", "-m", tiny_model, "--manifest", manifest,
                    "--no-wheels", "--out", stage, "--part-mib", "1"], check=True, capture_output=True)
    last = sorted(stage.glob("p*/part"))[-1]
    last.write_bytes(last.read_bytes()[:-1])  # a part cut short in transfer
    done = subprocess.run(["bash", ROOT / "benchmarks" / "gpu.sh", stage, "--device", "cpu"],
                          env=os.environ | {"OUT": str(tmp_path / "out"), "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "payload.tar: FAILED" in done.stdout
    assert not (tmp_path / "out" / "gpu.json").exists()
