"""`netorigin convert-head`: an old joblib (pickle) head file -> the pickle-free head format."""

from __future__ import annotations

from pathlib import Path

import click

from netorigin.calibration.errors import InputDataError

from .head_file import load_head, save_head


@click.command("convert-head")
@click.argument("old", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The head in the pickle-free format (.skops).")
def command(old: Path, out: Path) -> None:
    """Convert OLD, a head file written by an earlier netorigin. Loading a pickle runs whatever code it holds:
    convert only a file you made or trust; the result loads without running code."""
    import joblib

    try:
        head = joblib.load(old)
    except Exception as exc:  # joblib/pickle raise many types for foreign files
        raise InputDataError(f"not a joblib head file ({type(exc).__name__})", old) from None
    if not isinstance(head, dict) or not {"pipeline", "kind", "info"} <= set(head):
        raise InputDataError("not a netorigin head file", old)
    save_head(out, head["pipeline"], kind=head["kind"], info=head["info"])
    load_head(out)  # what was written loads under the safe rules, or this fails loudly
    click.echo(f"converted {old} -> {out}")
