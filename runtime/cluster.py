"""Running independent units of work (cases, patients, folds) here or on a Dask cluster.

A `Mapper` applies a top-level function to items and returns the results in the items' order, so a
distributed run gives exactly what a local run gives. `DaskMapper` sends each item as one task to an
existing Dask scheduler (`--scheduler tcp://host:8786`; Slurm through dask-jobqueue, see the README): large
shared arguments are scattered once to every worker, a task that dies with its worker is retried on another
(Dask's `allowed_failures`), and each worker keeps what it built once (a verified model and its session, an
embedder) in `worker_cached`. Dask is an optional extra, imported only here and only when asked for.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable, Iterable
from types import ModuleType
from typing import Any

from .errors import ConfigurationError, MissingDependencyError

INSTALL_HINT = "pip install 'netorigin[dask]'"
_CACHE: dict[Hashable, Any] = {}
_CACHE_LOCK = threading.Lock()


def worker_cached(key: Hashable, build: Callable[[], Any]) -> Any:
    """What `build` makes, built once per process (a Dask worker keeps its model session for every task)."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _distributed() -> ModuleType:
    try:
        return importlib.import_module("distributed")
    except ModuleNotFoundError:
        raise MissingDependencyError(f"--scheduler needs Dask distributed: {INSTALL_HINT}") from None


class LocalMapper:
    """Items one after another in this process (what every verb does without --scheduler)."""

    description = "local"

    def __enter__(self) -> LocalMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, func: Callable, items: Iterable, on_done: Callable[[Any], None] | None = None,
                 **shared: Any) -> list:
        results = []
        for item in items:
            results.append(func(item, **shared))
            if on_done is not None:
                on_done(results[-1])
        return results


class DaskMapper:
    """Each item one task on a Dask cluster; results in item order; shared arguments scattered once."""

    def __init__(self, client: Any, cluster: Any = None) -> None:
        self.client = client
        self.cluster = cluster  # a LocalCluster this mapper started, closed with it
        self.description = f"dask {client.scheduler.address}"

    def __enter__(self) -> DaskMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        """Disconnect; stop the local worker processes this mapper started (never a cluster it joined)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __call__(self, func: Callable, items: Iterable, on_done: Callable[[Any], None] | None = None,
                 **shared: Any) -> list:
        distributed = _distributed()
        items = list(items)
        scattered = {k: self.client.scatter([v], broadcast=True)[0] for k, v in shared.items()}  # one object each
        futures = self.client.map(func, items, pure=False, **scattered)
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(items)
        for future in distributed.as_completed(futures):
            results[index[future.key]] = future.result()
            if on_done is not None:
                on_done(results[index[future.key]])
        return results


def mapper_for(scheduler: str | None, timeout: str = "20s", workers: int = 1) -> LocalMapper | DaskMapper:
    """A local mapper; with `workers` > 1 one on a Dask cluster of that many worker processes on this machine
    (closed at exit); or one connected to the Dask scheduler at `scheduler` (e.g. tcp://host:8786)."""
    if scheduler is None and workers <= 1:
        return LocalMapper()
    if scheduler is None:
        distributed = _distributed()
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        return DaskMapper(distributed.Client(cluster), cluster)
    distributed = _distributed()
    try:
        client = distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
    return DaskMapper(client)
