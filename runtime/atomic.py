"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one, even after a
power cut (the file and then its folder are fsynced)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import OutputError


def _create_exclusive(folder: Path, name: str) -> tuple[int, Path]:
    """A new file with a random name in `folder`, mode 0o666 minus the process umask (as open() would give);
    the random part keeps concurrent writers, threads or processes, from ever sharing it."""
    path = folder / f".{name}.{secrets.token_hex(8)}.part"
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable; some filesystems cannot fsync a folder, and then the rename is all we have."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename over the target, fsync the folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_exclusive(path.parent, path.name)
    except OSError as exc:
        raise OutputError(f"cannot write here ({exc.strerror})", path.parent) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write file ({exc.strerror})", path) from None
        raise
    _fsync_folder(path.parent)


def ensure_writable_dir(folder: Path) -> None:
    """Fail before any work if the output folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = _create_exclusive(folder, "netorigin-write-test")
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"output folder is not writable ({exc.strerror})", folder) from None


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (a private key is never readable by others, even briefly); an
    existing file is never replaced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise OutputError(f"cannot create the file ({exc.strerror})", path) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
