"""CSV manifests (batch cases, training patches, training slides, MRI cases): rows with checked columns."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import ManifestError


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
