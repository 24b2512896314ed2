"""What every audit replay shares, whatever the case kind: reading a report (one line when it cannot be), the
field-by-field comparison of a report with its replay, and the audit's outcome."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ReportError

MAX_LISTED = 12


def load_json_report(path: Path) -> dict[str, Any]:
    """A netorigin case report as JSON (any case kind, any version), or a one-line error naming the file."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError("report file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"not a readable JSON report ({exc})", path) from None
    if not isinstance(report, dict) or "report_version" not in report or \
            report.get("status") not in ("ok", "insufficient_tissue"):
        raise ReportError("not a netorigin case report (no report_version, or a status other than ok / "
                          "insufficient_tissue)", path)
    return report


def check_report_schema(report: dict[str, Any], schema: dict[str, Any], path: Path) -> None:
    """What a replay reads from a report, checked first: a broken report is one line, never a traceback."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(report))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise ReportError(f"not a complete netorigin case report ({where}: {error.message})", path)


@dataclass
class Audit:
    """What a replay found: no differences means the report was reproduced bit for bit."""

    case_id: str
    differences: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)  # not differences: what the replay ran with, versions
    replayed: dict[str, Any] | None = None

    @property
    def reproduced(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.case_id, "reproduced": self.reproduced, "differences": self.differences,
                "context": self.context}


def _compared(path: tuple, not_compared: set[tuple]) -> bool:
    return tuple("*" if isinstance(p, int) else p for p in path) not in not_compared


def _walk(old: Any, new: Any, path: tuple, skip: set[tuple]) -> Iterator[str]:
    name = ".".join(str(p) for p in path) or "report"
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if not _compared((*path, key), skip):
                continue
            if key not in new:
                yield f"{name}.{key}: in the report, not in the replay"
            elif key not in old:
                yield f"{name}.{key}: in the replay, not in the report"
            else:
                yield from _walk(old[key], new[key], (*path, key), skip)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            if _compared((*path, i), skip):
                yield from _walk(a, b, (*path, i), skip)
    elif isinstance(old, list) and isinstance(new, list):
        yield f"{name}: {len(old)} items in the report, {len(new)} in the replay"
    elif old != new or type(old) is not type(new):
        yield f"{name}: report {json.dumps(old)}, replay {json.dumps(new)}"


def compare_reports(old: dict[str, Any], new: dict[str, Any], not_compared: set[tuple]) -> list[str]:
    """Every field the replay does not reproduce exactly, in report order, apart from the `not_compared` paths
    ("*" for any list index); past MAX_LISTED only their number."""
    found = list(_walk(old, new, (), not_compared))
    if len(found) > MAX_LISTED:
        found = found[:MAX_LISTED] + [f"… and {len(found) - MAX_LISTED} more differences"]
    return found


def version_differences(report: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """Each library whose version differs between the report and its replay (context, not a difference)."""
    old, new = report.get("versions") or {}, replayed.get("versions") or {}
    return [f"{name}: report made with {old.get(name)}, replayed with {new.get(name)}"
            for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
