"""The progress bar: on stderr when it is a terminal (a pseudo-terminal here), never in redirected output, never
with --quiet; stdout stays clean either way."""

from __future__ import annotations

import csv
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture()
def batch_args(tmp_path, slides, tiny_model):
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "slide", "annotations"])
        for case in ("c1", "c2"):
            writer.writerow([case, slides["svs20x"].slide, slides["svs20x"].annotations])
    return [str(Path(sys.executable).with_name("netorigin")), "batch", str(manifest), "-m", str(tiny_model),
            "--device", "cpu", "-o", str(tmp_path / "out")]


def run_on_terminal(args: list[str], stdout_file: Path | None = None) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal and stdout on a pipe (or `stdout_file`): (exit code, stdout, what the
    terminal showed)."""
    main, terminal = pty.openpty()
    target = stdout_file.open("w") if stdout_file is not None else subprocess.PIPE
    process = subprocess.Popen(args, stdout=target, stderr=terminal, text=True)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        shown += chunk
    code = process.wait(timeout=300)
    if stdout_file is None:
        stdout = process.stdout.read()
    else:
        target.close()
        stdout = stdout_file.read_text()
    os.close(main)
    return code, stdout, shown.decode(errors="replace")


def test_the_bar_counts_cases_on_a_terminal_and_stdout_stays_clean(batch_args):
    code, stdout, shown = run_on_terminal(batch_args)
    assert code == 0, shown
    assert "cases" in shown and "2/2" in shown and "cases/s" in shown
    assert "2/2" not in stdout and stdout.startswith("2 ok, 0 skipped")


def test_a_file_on_stdout_gets_no_bar_while_the_terminal_shows_it(batch_args, tmp_path):
    """`netorigin batch … > results.txt` on a terminal: the file holds the results only."""
    code, stdout, shown = run_on_terminal(batch_args, stdout_file=tmp_path / "results.txt")
    assert code == 0, shown
    assert "2/2" in shown and stdout.startswith("2 ok, 0 skipped")
    assert "2/2" not in stdout and "cases/s" not in stdout and "\r" not in stdout


def test_no_bar_in_redirected_output_nor_with_quiet(batch_args, tmp_path):
    log = tmp_path / "stderr.log"
    with log.open("w") as handle:
        done = subprocess.run(batch_args, stdout=subprocess.PIPE, stderr=handle, text=True, timeout=300)
    assert done.returncode == 0
    assert log.read_text() == "*** DEMO MODEL, NOT FOR DIAGNOSIS ***\n"  # the warning only: no bar, not its label
    both = tmp_path / "both.log"  # `> both.log 2>&1`: stdout and stderr in one file
    with both.open("w") as handle:
        done = subprocess.run([*batch_args[:-1], str(tmp_path / "out2")], stdout=handle, stderr=subprocess.STDOUT,
                              timeout=300)
    assert done.returncode == 0 and "2 ok, 0 skipped" in both.read_text()
    assert "2/2" not in both.read_text() and "cases/s" not in both.read_text()
    code, _, shown = run_on_terminal([*batch_args, "--redo", "--quiet"])
    assert code == 0 and "2/2" not in shown and "cases/s" not in shown


def test_a_counting_mapper_steps_once_per_finished_task_and_keeps_the_callers_callback():
    """What `evaluate`'s bar counts: finished folds, wherever they ran (the same wrapper goes round a Dask mapper)."""
    from netorigin.runtime.batch.cluster import LocalMapper
    from netorigin.runtime.progress import CountingMapper

    steps, seen = [], []
    results = CountingMapper(LocalMapper(), lambda: steps.append(1))(lambda x, k: x * k, [1, 2, 3],
                                                                      on_done=seen.append, k=10)
    assert results == [10, 20, 30] and seen == [10, 20, 30] and len(steps) == 3


def test_evaluate_counts_its_folds_on_a_terminal(tmp_path):
    from .test_evaluate import cohort

    emb = cohort(3)
    emb.save(tmp_path / "emb.npz")
    folds = len({str(p) for p in emb.patients.tolist()})  # the extended protocol: one fold per patient
    code, stdout, shown = run_on_terminal([str(Path(sys.executable).with_name("netorigin")), "evaluate",
                                           str(tmp_path / "emb.npz"), "--out", str(tmp_path / "ev")])
    assert code == 0, shown
    assert f"{folds}/{folds}" in shown and "folds/s" in shown and "folds/s" not in stdout


def test_finetune_counts_patients_read_then_training_batches_on_a_terminal(tmp_path):
    from netorigin.export.synthetic import make_cohort

    cohort = make_cohort(tmp_path / "cohort", {"pancreas": 2, "small_intestine": 2}, seed=6, mpps=(0.5,),
                         size_um=(1400, 1200), multi_slide_every=0)
    args = [str(Path(sys.executable).with_name("netorigin")), "finetune", str(cohort), "--weights-kind", "random",
            "--patches-per-case", "2", "--head-epochs", "1", "--epochs", "1", "--batch-size", "1",
            "--train-fraction", "0.5", "-o", str(tmp_path / "ft.pt")]
    code, stdout, shown = run_on_terminal(args)
    assert code == 0, shown
    # 4 patients read; 2 of them train (4 patches): 4 batches of one per epoch x 2 epochs
    assert "4/4" in shown and "patients/s" in shown and "4/4" not in stdout
    assert "training" in shown and "8/8" in shown and "batches/s" in shown and "fine-tuned" in stdout


def test_bench_counts_every_measurement_on_a_terminal(slides, tiny_model):
    """Each engine this host has (ONNX Runtime, OpenVINO f32, bf16 where the CPU has it) x 5 repetitions x
    (batch 8 and the engine's product batch, then one case)."""
    from netorigin.runtime.engines.openvino_session import bf16_available

    steps = (3 if bf16_available() else 2) * 5 * 3
    slide = slides["svs20x"]
    code, stdout, shown = run_on_terminal([str(Path(sys.executable).with_name("netorigin")), "bench", str(slide.slide),
                                           "--annotations", str(slide.annotations), "-m", str(tiny_model),
                                           "--device", "cpu", "--batch", "8"])
    assert code == 0, shown
    assert "bench" in shown and f"{steps}/{steps}" in shown and "runs/s" in shown
    assert f"{steps}/{steps}" not in stdout and stdout.splitlines()[-1].startswith("recommended: ")


def test_calibrate_counts_the_patients_it_scores_on_a_terminal(tmp_path, monkeypatch, capsys):
    from .helpers import run_cli
    from .test_evaluate import cohort

    cohort(3).save(tmp_path / "fit.npz")
    held_out = cohort(4)  # other patients: calibration is held out
    held_out.save(tmp_path / "calibration.npz")
    code, _, err = run_cli(monkeypatch, capsys, "fit", tmp_path / "fit.npz", "-o", tmp_path / "head.skops")
    assert code == 0, err
    patients = len(held_out.patient_table())
    code, stdout, shown = run_on_terminal([str(Path(sys.executable).with_name("netorigin")), "calibrate",
                                           "--embeddings", str(tmp_path / "calibration.npz"), "--head",
                                           str(tmp_path / "head.skops"), "-o", str(tmp_path / "bands.json")])
    assert code == 0, shown
    assert "scoring" in shown and f"{patients}/{patients}" in shown and "patients/s" in shown
    assert "patients/s" not in stdout and "band table ->" in stdout
