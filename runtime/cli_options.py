"""Options shared by `predict` and `batch`."""

from __future__ import annotations

import click

from .regions import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, RegionRules
from .session import DEVICES


def model_options(func):
    """--model, --device, --confidence, --seed, --threads, --read-workers, region classes."""
    options = [
        click.option("--model", "-m", required=True, type=click.Path(dir_okay=False),
                     help="netorigin ONNX model (see `netorigin inspect`)."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="auto = CUDA when available, else CPU; cuda never falls back silently."),
        click.option("--confidence", "-c", default=None,
                     help="Stored confidence level c (e.g. 0.875 or 7/8); default: the model's."),
        click.option("--seed", type=int, default=0, show_default=True, help="Patch-sampling seed."),
        click.option("--threads", type=int, default=None, help="ONNX Runtime CPU threads (default: all)."),
        click.option("--read-workers", type=int, default=4, show_default=True, help="Slide-reading threads."),
    ]
    for option in reversed(options):
        func = option(func)
    return region_options(func)


def region_options(func):
    """--include-class / --exclude-class: the same region rules for predict, batch, embed and train."""
    options = [
        click.option("--include-class", "include", multiple=True, default=DEFAULT_INCLUDE, show_default=True,
                     help="QuPath class(es) that mark tumour (repeatable)."),
        click.option("--exclude-class", "exclude", multiple=True, default=DEFAULT_EXCLUDE, show_default=True,
                     help="QuPath class(es) cut out of the tumour (repeatable; 'Name*' = prefix)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def region_rules(include: tuple[str, ...], exclude: tuple[str, ...]) -> RegionRules:
    return RegionRules(include=tuple(include), exclude=tuple(exclude))
