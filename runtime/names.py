"""Names that become parts of output paths (case ids), checked in one place for the CLI, batch and the API.

Case ids come from barcodes and LIS exports; a report is written as `OUT/CASE.json`, so an id like
`../../x` or `a/b` must never reach a path.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigurationError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
# A batch folder also holds these; a case of the same name would be overwritten by them.
RESERVED_CASE_IDS = ("index", "batch-summary")


def check_name(name: str, what: str = "name", source: str | Path | None = None) -> str:
    """A name that becomes a file name (case id, output stem), or a ConfigurationError naming it (repr keeps
    control characters on one line)."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ConfigurationError(f"{what} {name!r} is not usable as a file name ({RULE})", source)
    return name


def check_case_id(case_id: str, source: str | Path | None = None) -> str:
    """A case id: a safe name that is not one of the batch folder's own files."""
    check_name(case_id, "case id", source)
    if case_id.lower() in RESERVED_CASE_IDS:
        raise ConfigurationError(f"case id {case_id!r} is reserved (a batch folder's {case_id}.* files)", source)
    return case_id


def case_id_from_path(path: Path | str) -> str:
    """A default case id from a slide's file name (a DICOMweb URL's series UID): characters outside the safe set
    become '_'."""
    name = path.rstrip("/").rsplit("/", 1)[-1] if isinstance(path, str) and "://" in path else Path(path).stem
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-")[:128]
    return stem or "case"


def case_file(out: Path, case_id: str, suffix: str) -> Path:
    """`OUT/CASE<suffix>`, for a checked id; refuses anything that would resolve outside `out`."""
    path = out / f"{check_case_id(case_id)}{suffix}"
    if path.resolve().parent != out.resolve():
        raise ConfigurationError(f"case id {case_id!r} would write outside the output folder", out)
    return path
