"""One typed exception hierarchy for every failure a user can cause.

Each error names the file it concerns and the problem in one line, so the CLI can print it as is and
batch mode can record it as the reason a case failed.
"""

from __future__ import annotations

from pathlib import Path


def printable(text: object, limit: int = 60) -> str:
    """Text from a user's file or a library, safe for a one-line message (no control characters, bounded)."""
    text = " ".join(str(text).split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "…"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of a library's exception (ONNX Runtime, OpenVINO, Dask), for a one-line message."""
    lines = str(exc).splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


class NetoriginError(Exception):
    """Base class: a problem with the user's input, model or environment (not a bug)."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class SlideError(NetoriginError):
    """A slide cannot be opened or read, or lacks what the method needs (e.g. microns per pixel)."""


class AnnotationError(NetoriginError):
    """An annotation file is unreadable, of the wrong shape, or selects no usable tumour region."""


class ModelError(NetoriginError):
    """A model file is not a valid netorigin ONNX model (format, metadata contract or integrity)."""


class ConfigurationError(NetoriginError):
    """An option value is not usable with this model or this host (confidence level, device, ...)."""


class DeviceError(ConfigurationError):
    """The execution provider asked for is not available; we never fall back silently."""


class MriInputError(NetoriginError):
    """An MRI case cannot be used: a missing or unreadable sequence, geometry that cannot be aligned, a region of
    interest outside a volume, a missing or unknown clinical value."""


class ManifestError(NetoriginError):
    """A manifest (CSV) has missing files, bad columns or duplicate ids."""


class ReportError(NetoriginError):
    """A report file given to `verify` is not a netorigin case report it can replay."""


class InsufficientTissueError(NetoriginError):
    """Too little acceptable tissue for the number of patches the model was calibrated on."""

    def __init__(self, problem: str, path: str | Path | None = None, *, possible: int = 0,
                 required: int = 0) -> None:
        self.possible = possible
        self.required = required
        super().__init__(problem, path)


class InferenceError(NetoriginError):
    """ONNX Runtime failed while running a verified model (out of memory, a provider fault)."""


class OutputError(NetoriginError):
    """An output location cannot be written."""


class MissingDependencyError(ConfigurationError):
    """An optional package this feature needs is not installed; the message says what to install."""


class SignatureError(ModelError):
    """A model's signature is missing where one is required, invalid, or by a key that is not trusted."""


class ClusterError(NetoriginError):
    """The Dask cluster lost work it was given (workers dying again and again, the scheduler gone)."""
