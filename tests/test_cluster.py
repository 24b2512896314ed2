"""Scale-out on a Dask LocalCluster of two worker processes on the loopback interface: the same results as a
local run, and every case exactly once even when a worker dies mid-run."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from functools import partial

import numpy as np
import pytest
import torch
from distributed import Client, LocalCluster

from netorigin.calibration.embeddings import Embeddings
from netorigin.calibration.protocols import binary_loo, extended_loo
from netorigin.export.embeddings import EmbedderSpec, embed_manifest, embed_manifest_on
from netorigin.export.heads import fit_scorer
from netorigin.runtime.batch.cluster import DaskMapper, LocalMapper, mapper_for
from netorigin.runtime.batch.cluster_access import ClusterAccess
from netorigin.runtime.batch.slides import read_manifest, run_batch
from netorigin.runtime.errors import ConfigurationError
from netorigin.runtime.slide.predictor import Predictor

from .helpers import run_cli, synthetic_embeddings

# Fields that legitimately differ between two runs of the same case.
VOLATILE = ("timings_s", "created")


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        yield client


def manifest(tmp_path, slides, n_cases):
    rows = [slides[name] for name in ("svs20x", "svs40x", "tiff20x")]
    path = tmp_path / "cases.csv"
    path.write_text("case,slide,annotations\n" + "".join(
        f"case{i},{rows[i % 3].slide},{rows[i % 3].annotations}\n" for i in range(n_cases)))
    return path


def reports(folder, where: str):
    """The case reports without their volatile fields, each checked to record `where` it ran."""
    found = {}
    for path in sorted(folder.glob("case*.json")):
        doc = json.loads(path.read_text())
        for key in VOLATILE:
            doc.pop(key)
        assert doc.pop("cluster") == where
        found[path.stem] = doc
    return found


def test_batch_on_the_cluster_equals_a_local_run(cluster, tiny_model, slides, tmp_path):
    cases = read_manifest(manifest(tmp_path, slides, 5))
    local = run_batch(Predictor(tiny_model, device="cpu"), cases, tmp_path / "local")
    driver = Predictor(tiny_model, device="cpu", inference=False)  # the driver opens no engine
    remote = run_batch(driver, cases, tmp_path / "dask", mapper=DaskMapper(cluster))
    assert [o.__dict__ for o in remote] == [o.__dict__ for o in local]
    assert reports(tmp_path / "dask", "tcp-loopback") == reports(tmp_path / "local", "local")
    assert len(reports(tmp_path / "local", "local")) == 5
    summary = json.loads((tmp_path / "dask" / "batch-summary.json").read_text())
    assert summary.pop("cluster") == {"scheduler": cluster.scheduler.address, "scheme": "tcp-loopback",
                                      "insecure_cluster": False}
    local_summary = json.loads((tmp_path / "local" / "batch-summary.json").read_text())
    assert local_summary.pop("cluster")["scheme"] == "local" and summary == local_summary
    assert (tmp_path / "dask" / "index.html").exists()


def test_rerun_on_the_cluster_skips_finished_cases_by_the_local_rule(cluster, tiny_model, slides, tmp_path):
    cases = read_manifest(manifest(tmp_path, slides, 3))
    run_batch(Predictor(tiny_model, device="cpu"), cases, tmp_path / "out")
    again = run_batch(Predictor(tiny_model, device="cpu", inference=False), cases, tmp_path / "out",
                      mapper=DaskMapper(cluster))
    assert [o.status for o in again] == ["skipped"] * 3


def test_batch_cli_takes_a_scheduler_address(cluster, tiny_model, slides, tmp_path, monkeypatch, capsys):
    path = manifest(tmp_path, slides, 2)
    code, out, err = run_cli(monkeypatch, capsys, "batch", path, "-m", tiny_model, "--device", "cpu", "-o",
                             tmp_path / "out", "--scheduler", cluster.scheduler.address)
    assert code == 0, err
    assert "2 ok" in out
    report = json.loads((tmp_path / "out" / "case0.json").read_text())
    assert report["provider"] == "CPUExecutionProvider"  # the worker's engine, not the driver's "none"
    assert report["cluster"] == "tcp-loopback"  # plaintext to loopback needs no --insecure-cluster


def test_embedding_on_the_cluster_equals_a_local_run(cluster, slides, tmp_path):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("case,label,specimen,slide,annotations\n" + "".join(
        f"p{i},{label},A,{slides[name].slide},{slides[name].annotations}\n"
        for i, (name, label) in enumerate([("svs20x", "pancreas"), ("svs40x", "small_intestine"),
                                           ("tiff20x", "other")])))
    threads = torch.get_num_threads()
    spec = EmbedderSpec("random", seed=3, engine="torch", batch_size=4, threads=1)  # the same count everywhere
    try:
        engine, info = spec.build()
        local = embed_manifest(cohort, engine, info, patches_per_case=3, seed=1)
    finally:
        torch.set_num_threads(threads)
    remote = embed_manifest_on(DaskMapper(cluster), cohort, spec, info, patches_per_case=3, seed=1)
    assert remote.patients.tolist() == local.patients.tolist() == ["p0"] * 3 + ["p1"] * 3 + ["p2"] * 3
    assert remote.patch_ids.tolist() == local.patch_ids.tolist()
    assert remote.labels.tolist() == local.labels.tolist() and remote.info == local.info
    np.testing.assert_array_equal(remote.embeddings, local.embeddings)


def _cohort(n_per_class: int) -> Embeddings:
    x, y = synthetic_embeddings(n_per_class=n_per_class * 10, dim=64, seed=4)
    labels = np.concatenate([y, np.full(40, 2)])
    x = np.concatenate([x, np.random.default_rng(5).gamma(1.5, 0.3, (40, 64)).astype(np.float32)])
    patients = np.array([f"q{i // 10}" for i in range(len(labels))])
    n = len(labels)
    return Embeddings(embeddings=x, patients=patients, labels=labels.astype(np.int64),
                      specimens=np.array(["A"] * n), slides=np.array(["s"] * n),
                      patch_ids=np.array([str(i) for i in range(n)]), info={})


@pytest.mark.parametrize("protocol", [binary_loo, extended_loo])
def test_evaluation_folds_on_the_cluster_equal_a_local_run(cluster, protocol):
    emb = _cohort(n_per_class=6)
    fit = partial(fit_scorer, "reference")
    local = protocol(emb, fit, "reference", seed=2, mapper=LocalMapper())
    remote = protocol(emb, fit, "reference", seed=2, mapper=DaskMapper(cluster))
    assert _without_sums(remote) == _without_sums(local) and len(local["patients"]) >= 12
    # LAPACK's SVD (PCA) may differ in the last bit with the worker's thread count: sums agree to 1e-9.
    for a, b in zip(remote["patients"], local["patients"]):
        assert a["patient_sum"] == pytest.approx(b["patient_sum"], abs=1e-9)


def _without_sums(result: dict) -> dict:
    return result | {"patients": [{k: v for k, v in p.items() if k != "patient_sum"} for p in result["patients"]]}


def test_an_unreachable_scheduler_is_a_one_line_error():
    with pytest.raises(ConfigurationError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9") as exc:
        mapper_for(ClusterAccess("tcp://127.0.0.1:9"), timeout="2s")
    assert "\n" not in str(exc.value)


def test_evaluate_folds_in_two_local_processes_equal_one(monkeypatch, capsys, tmp_path):
    emb = _cohort(n_per_class=4)
    emb.save(tmp_path / "emb.npz")
    results = []
    for workers in ("1", "2"):
        code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "emb.npz", "--protocol", "binary",
                                 "--workers", workers, "--out", tmp_path / workers)
        assert code == 0, err
        result = json.loads((tmp_path / workers / "binary-loo.json").read_text())
        result.pop("wall_time_s")
        result["cost"].pop("time_per_case_ms")  # measured, so never equal twice
        results.append(result)
    assert [r.pop("cluster")["scheme"] for r in results] == ["local", "tcp-loopback"]  # where the folds ran
    assert results[0] == results[1] and len(results[0]["patients"]) == 8


def _marked_attempt(item: int, folder: str) -> int:
    """A task that leaves one marker file per execution (`item.pid.n`), so the test can count how often each item
    ran and on which process; items from 4 on wait for the file `go` (so the test can kill a worker holding one)."""
    import os
    import time
    import uuid
    from pathlib import Path

    Path(folder, f"{item}.{os.getpid()}.{uuid.uuid4().hex}").write_text("")
    deadline = time.monotonic() + 60
    while item >= 4 and not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return item


def test_results_already_received_never_run_again_when_a_worker_dies(cluster, tmp_path):
    """After 4 results arrived, the worker holding a not-yet-received item is killed: that item runs again on the
    other worker (a retry happened), and the 4 received items never run again."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import the tests
    received: list[int] = []
    victim: dict[str, int] = {}

    def kill_after_four(item: int) -> None:
        received.append(item)
        if len(received) == 4:
            deadline = time.monotonic() + 60
            while not victim and time.monotonic() < deadline:
                held = [p for p in tmp_path.glob("*.*.*") if int(p.name.split(".")[0]) >= 4]
                if held:
                    item_id, pid, _ = held[0].name.split(".")
                    victim.update(item=int(item_id), pid=int(pid))
                    os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.02)
            (tmp_path / "go").write_text("")

    results = DaskMapper(cluster)(_marked_attempt, list(range(10)), on_done=kill_after_four, folder=str(tmp_path))
    assert results == list(range(10))
    runs = {i: sorted(p.name.split(".")[1] for p in tmp_path.glob(f"{i}.*")) for i in range(10)}
    assert all(len(runs[i]) == 1 for i in received[:4])  # received before the kill: released, never recomputed
    assert victim and len(runs[victim["item"]]) == 2 and str(victim["pid"]) in runs[victim["item"]]  # a retry
