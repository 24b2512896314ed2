"""Names that become parts of output paths (case ids), checked in one place for the CLI, batch and the API.

Case ids come from barcodes and LIS exports; a report is written as `OUT/CASE.json`, so an id like
`../../x` or `a/b` must never reach a path.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigurationError

SAFE_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_case_id(case_id: str, source: str | Path | None = None) -> str:
    """The id itself, or a ConfigurationError naming it (repr: control characters stay on one line)."""
    if not isinstance(case_id, str) or not SAFE_CASE_ID.fullmatch(case_id):
        raise ConfigurationError(f"case id {case_id!r} is not usable as a file name ({RULE})", source)
    return case_id


def case_id_from_path(path: Path) -> str:
    """A default case id from a slide's file name: characters outside the safe set become '_'."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem).lstrip("._-")[:128]
    return stem or "case"


def case_file(out: Path, case_id: str, suffix: str) -> Path:
    """`OUT/CASE<suffix>`, for a checked id; refuses anything that would resolve outside `out`."""
    path = out / f"{check_case_id(case_id)}{suffix}"
    if path.resolve().parent != out.resolve():
        raise ConfigurationError(f"case id {case_id!r} would write outside the output folder", out)
    return path
