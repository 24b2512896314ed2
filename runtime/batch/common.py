"""What every kind of batch shares: one batch per output folder at a time, the outcome of a case, finished reports
(a rerun resumes from them) and the summary's counts."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputError

SUMMARY_NAME = "batch-summary.json"
LOCK_NAME = ".netorigin-batch.lock"
_held_locks: set[Path] = set()  # output folders this process holds (a batch may lock before calling run_batch)


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold the output folder for one batch: a second batch into it, from this host or another sharing the folder
    where the file system supports locks, is refused in one line. The kernel drops the lock if the process dies."""
    out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()
    if key in _held_locks:
        yield
        return
    handle = (out / LOCK_NAME).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputError("another netorigin batch is writing to this folder: wait for it to finish, or choose "
                          "another output folder", out) from None
    except OSError as exc:
        handle.close()
        raise OutputError(f"cannot lock this folder for the batch ({exc.strerror})", out) from None
    _held_locks.add(key)
    try:
        yield
    finally:
        _held_locks.discard(key)
        handle.close()


@dataclass(frozen=True)
class CaseOutcome:
    case_id: str
    status: str  # ok | skipped | insufficient_tissue | failed
    verdict: str | None = None
    reason: str | None = None


def finished_report(report: Path) -> dict | None:
    """A finished case's JSON report (ok or insufficient tissue), or None (absent, unreadable, unfinished)."""
    try:
        doc = json.loads(report.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("status") in ("ok", "insufficient_tissue") else None


STATUSES = ("ok", "skipped", "insufficient_tissue", "failed")


def status_counts(outcomes: list[CaseOutcome]) -> dict[str, int]:
    return {s: sum(o.status == s for o in outcomes) for s in STATUSES}
