"""CSV manifests (batch cases, training patches, training slides): rows with checked columns."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import ConfigurationError, ManifestError
from .slide import MppRule


def read_csv_rows(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] | None = None
                  ) -> list[dict[str, str]]:
    """Rows as dicts of stripped strings; refuses missing columns, unknown ones (when `optional` is given),
    non-UTF-8 text and empty files, naming the file."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in columns]
            unknown = [] if optional is None else [c for c in columns if c not in required + optional]
            if missing or unknown:
                expected = ", ".join(required) + (f" [, {', '.join(optional)}]" if optional else "")
                raise ManifestError(f"bad columns: missing {', '.join(missing) or 'none'}, unknown "
                                    f"{', '.join(unknown) or 'none'} (expected {expected})", path)
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except FileNotFoundError:
        raise ManifestError("manifest not found", path) from None
    except IsADirectoryError:
        raise ManifestError("is a directory, not a manifest", path) from None
    except UnicodeDecodeError:
        raise ManifestError("manifest is not UTF-8 text", path) from None
    if not rows:
        raise ManifestError("manifest has no rows", path)
    return rows


def row_mpp_rule(row: dict[str, str], default: MppRule, line: int, path: Path) -> MppRule:
    """A slide row's MPP rule: its `mpp` / `force_mpp` columns win over the command line's."""
    values = {}
    for column in ("mpp", "force_mpp"):
        try:
            values[column] = float(row[column]) if row.get(column) else None
        except ValueError:
            raise ManifestError(f"line {line}: {column} {row[column]!r} is not a number", path) from None
    if values["mpp"] is None and values["force_mpp"] is None:
        return default
    try:
        return MppRule(fallback=values["mpp"], forced=values["force_mpp"])
    except ConfigurationError as exc:
        raise ManifestError(f"line {line}: {exc.problem}", path) from None
