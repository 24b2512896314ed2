"""One progress bar for every long verb: count, rate and ETA on stderr, shown only where stderr is a terminal, so
logs and JSON on stdout (and a log file of stderr) stay clean; `--quiet` silences it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

_drawn = 0  # bars now on the terminal


def say(message: str) -> None:
    """click.echo for a line printed while a bar may be drawn: the bar's line is cleared first, so the two never
    share a line (the bar redraws below at its next step)."""
    if _drawn and sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
    click.echo(message)


class Bar:
    """A progress bar's handle: call it once per finished item; `extend(n)` when the work turns out longer (a step
    whose size is known only once earlier steps ran). Does nothing off a terminal or with --quiet."""

    def __init__(self, bar: Any = None) -> None:
        self.bar, self.done = bar, 0

    def __call__(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1, self.done)

    def extend(self, more: int) -> None:
        if self.bar is not None and more > 0:
            self.bar.length += more


@contextmanager
def progress(total: int, label: str, unit: str, quiet: bool = False) -> Iterator[Bar]:
    """A Bar; on a terminal it draws `label [####  ] 12/40  1.3 cases/s  ETA` on stderr."""
    global _drawn
    if quiet or total <= 0 or not sys.stderr.isatty():
        yield Bar()
        return
    start = time.perf_counter()
    handle = Bar()

    def rate(_: object) -> str:
        elapsed = time.perf_counter() - start
        return f"{handle.done / elapsed:.2f} {unit}/s" if handle.done and elapsed > 0 else ""

    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True,
                           item_show_func=rate) as bar:
        handle.bar = bar
        _drawn += 1
        try:
            yield handle
        finally:
            _drawn -= 1


class CountingMapper:
    """A mapper (local or Dask) whose every finished task is also a progress step: a cluster run's bar counts
    finished tasks, wherever they ran."""

    def __init__(self, mapper: Callable[..., list], step: Callable[[], None]) -> None:
        self.mapper, self.step = mapper, step

    def __call__(self, func: Callable, items, on_done: Callable[[object], None] | None = None, **kwargs) -> list:
        def done(result: object) -> None:
            self.step()
            if on_done is not None:
                on_done(result)

        return self.mapper(func, items, on_done=done, **kwargs)
