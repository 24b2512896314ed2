"""Running independent units of work (cases, patients, folds) here or on a Dask cluster.

A `Mapper` applies a top-level function to items and returns the results in the items' order, so a
distributed run gives exactly what a local run gives. `DaskMapper` sends each item as one task to an
existing Dask scheduler (`--scheduler tls://host:8786`, admitted by cluster_access; Slurm through dask-jobqueue,
see the README): large shared arguments are scattered once to every worker, a task that dies with its worker is
retried on another (Dask's `allowed_failures`), and each worker keeps what it built once (a verified model and its
session, an embedder) in `worker_cached`. Dask is an optional extra, imported only when asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ..errors import ClusterError, ConfigurationError, first_line
from .cluster_access import ClusterAccess, distributed_module

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()


def worker_cached(key: tuple, build: Callable[[], Any], keep: int = 2) -> Any:
    """What `build` makes, built once per process (a Dask worker keeps its model session for every task). Of the
    entries of one kind (`key[0]`) only the `keep` most recently built stay, so a long-lived worker that serves
    many models or settings does not grow without bound."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            same_kind = [k for k in _CACHE if k[0] == key[0]]
            for old in same_kind[: max(0, len(same_kind) - keep + 1)]:
                del _CACHE[old]
            _CACHE[key] = build()
        return _CACHE[key]


class LocalMapper:
    """Items one after another in this process (what every verb does without --scheduler)."""

    description = "local"
    access = ClusterAccess()

    def __enter__(self) -> LocalMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, func: Callable, items: Iterable, on_done: Callable[[Any], None] | None = None,
                 on_lost: Callable[[Any, str], Any] | None = None, scatter: tuple[str, ...] = (),
                 **shared: Any) -> list:
        """`on_lost` and `scatter` are the cluster's concerns: nothing is lost or sent in one process."""
        results = []
        for item in items:
            results.append(func(item, **shared))
            if on_done is not None:
                on_done(results[-1])
        return results


class DaskMapper:
    """Each item one task on a Dask cluster; results in item order.

    Small shared arguments travel with every task, so a worker that replaces a dead one (a Slurm job past its
    walltime) can run any task; `scatter` names the large ones (embeddings) sent once to every worker, which
    survive as long as one of those workers does. A result is released from the cluster as soon as it reached
    the driver, so a worker dying later never makes finished tasks run again. A task whose workers keep dying
    (Dask gives up after `allowed_failures`), that the cluster loses, or whose own code raises becomes
    `on_lost(item, reason)` when given (batch: that case failed, the others go on and the summary is written), else
    a one-line ClusterError (or the task's own exception)."""

    def __init__(self, client: Any, cluster: Any = None, access: ClusterAccess | None = None) -> None:
        self.client = client
        self.cluster = cluster  # a LocalCluster this mapper started, closed with it
        bare = ClusterAccess(client.scheduler.address)  # how it was reached (batch records it): a bare client's
        self.access = access or replace(bare, insecure=bare.scheme == "tcp-insecure")  # by its address
        self.description = f"dask {client.scheduler.address}"

    def __enter__(self) -> DaskMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        """Disconnect; stop the local worker processes this mapper started (never a cluster it joined)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __call__(self, func: Callable, items: Iterable, on_done: Callable[[Any], None] | None = None,
                 on_lost: Callable[[Any, str], Any] | None = None, scatter: tuple[str, ...] = (),
                 **shared: Any) -> list:
        distributed = distributed_module()
        items = list(items)
        try:
            sent = {k: self.client.scatter([v], broadcast=True)[0] if k in scatter else v for k, v in shared.items()}
            futures = self.client.map(func, items, pure=False, **sent)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"the Dask cluster cannot take the tasks ({first_line(exc)})") from None
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(items)
        for future in distributed.as_completed(futures):
            i = index[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:  # the cluster lost the task, or the task's own code raised
                lost = future.status != "error" or isinstance(exc, distributed.KilledWorker)
                if on_lost is None:
                    if not lost:
                        raise  # the task's own error, as a local run raises it
                    raise ClusterError(f"the cluster lost this task ({type(exc).__name__}: {first_line(exc)})"
                                       ) from None
                reason = (f"the cluster lost this task ({type(exc).__name__}: {first_line(exc)})" if lost
                          else f"the task raised {type(exc).__name__}: {first_line(exc)}")
                results[i] = on_lost(items[i], reason)
            future.release()  # the driver has it: a worker lost later must not recompute it
            if on_done is not None:
                on_done(results[i])
        return results


def mapper_for(cluster: ClusterAccess = ClusterAccess(), timeout: str = "20s", workers: int = 1
               ) -> LocalMapper | DaskMapper:
    """A local mapper; with `workers` > 1 one on a Dask cluster of that many worker processes on this machine
    (closed at exit); or one connected to `cluster`'s scheduler, after its address policy and (for tls://) a TLS
    handshake both ways have passed."""
    cluster.check()  # before any connection
    if cluster.scheduler is None and workers <= 1:
        return LocalMapper()
    distributed = distributed_module()
    if cluster.scheduler is None:
        local = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         host="127.0.0.1", dashboard_address="127.0.0.1:0")
        return DaskMapper(distributed.Client(local), local)
    security = cluster.security()
    if security is not None:
        cluster.check_scheduler(security)
    try:
        client = distributed.Client(cluster.scheduler, timeout=timeout, security=security)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigurationError(f"cannot reach the Dask scheduler at {cluster.scheduler} ({exc})") from None
    return DaskMapper(client, access=cluster)
