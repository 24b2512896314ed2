"""Faults on a Dask cluster, each on a cluster of its own: a worker killed while it holds a case (the case is retried
elsewhere and every report exists once), and a task whose own code raises (that case fails, the summary is
written)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from netorigin.runtime.batch.cluster import DaskMapper
from netorigin.runtime.batch.slides import read_manifest, run_batch
from netorigin.runtime.slide.predictor import Predictor

from .test_cluster import manifest


class HoldCases(WorkerPlugin):
    """On every worker (also one the nanny starts to replace a dead one): each case leaves a marker
    `<case>.<pid>.<n>` when it starts, then waits until the file `go` exists before it runs."""

    name = "hold-cases"

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def setup(self, worker) -> None:
        import netorigin.runtime.batch.slides as batch

        real, folder = batch.run_case, Path(self.folder)

        def held(predictor, case, *args, **kwargs):
            n = len(list(folder.glob(f"{case.case_id}.*")))
            (folder / f"{case.case_id}.{os.getpid()}.{n}").write_text("")
            deadline = time.monotonic() + 60
            while not (folder / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return real(predictor, case, *args, **kwargs)

        self.real = real
        batch.run_case = held  # run_case_on_worker looks it up in the module at call time

    def teardown(self, worker) -> None:  # unregister_worker_plugin: a shared cluster fixture is left as it was
        import netorigin.runtime.batch.slides as batch

        batch.run_case = self.real


def test_a_case_held_by_a_killed_worker_runs_again_elsewhere_exactly_once(tiny_model, slides, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import the tests
    marks = tmp_path / "marks"
    marks.mkdir()
    cases = read_manifest(manifest(tmp_path, slides, 4))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        client.register_plugin(HoldCases(str(marks)))
        pids = set(client.run(os.getpid).values())
        driver = Predictor(tiny_model, device="cpu", inference=False)
        import threading

        victim: dict[str, object] = {}

        def kill_a_worker_holding_a_case() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                started = sorted(marks.glob("case*"))
                if started:
                    case, pid, _ = started[0].name.split(".")
                    victim.update(case=case, pid=int(pid))
                    os.kill(int(pid), signal.SIGKILL)
                    (marks / "go").write_text("")
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_worker_holding_a_case)
        killer.start()
        outcomes = run_batch(driver, cases, tmp_path / "out", mapper=DaskMapper(client))
        killer.join()
    assert victim and victim["pid"] in pids
    starts = {c.case_id: sorted(marks.glob(f"{c.case_id}.*")) for c in cases}
    held = starts[victim["case"]]
    # the held case started twice: on the killed worker, then on another process (a retry happened)
    assert len(held) == 2 and len({p.name.split(".")[1] for p in held}) == 2, held
    assert str(victim["pid"]) in {p.name.split(".")[1] for p in held}
    assert [o.case_id for o in outcomes] == [c.case_id for c in cases]
    assert {o.status for o in outcomes} == {"ok"}, outcomes
    assert sorted(p.stem for p in (tmp_path / "out").glob("case*.json")) == [c.case_id for c in cases]
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["counts"]["ok"] == len(cases)


class BreakCase(WorkerPlugin):
    """`run_case_on_worker` raises (outside run_case's own catch-all) for one case."""

    name = "break-case"

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id

    def setup(self, worker) -> None:
        import netorigin.runtime.batch.slides as batch

        real, broken = batch.run_case, self.case_id

        def run_case(predictor, case, *args, **kwargs):
            if case.case_id == broken:
                raise MemoryError("simulated: the worker ran out of memory opening the engine")
            return real(predictor, case, *args, **kwargs)

        batch.run_case = run_case


def test_a_task_that_raises_fails_its_case_and_the_summary_is_written(tiny_model, slides, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cases = read_manifest(manifest(tmp_path, slides, 3))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        client.register_plugin(BreakCase("case1"))
        outcomes = run_batch(Predictor(tiny_model, device="cpu", inference=False), cases, tmp_path / "out",
                             mapper=DaskMapper(client))
    assert [o.status for o in outcomes] == ["ok", "failed", "ok"]
    assert "MemoryError" in outcomes[1].reason and "\n" not in outcomes[1].reason
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "skipped": 0, "insufficient_tissue": 0, "failed": 1}
