"""The `netorigin` command: a group whose verbs are plugins, imported only when run.

Each layer registers its own verbs as entry points (group `netorigin.verbs` in pyproject.toml), so this
module knows no verb of the layers above it, `predict` never loads the training stack, and a verb whose
extra is not installed says what to install instead of printing a traceback.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import cache
from importlib.metadata import EntryPoint, entry_points

import click

from ..errors import InsufficientTissueError, NetoriginError

VERB_GROUP = "netorigin.verbs"
EXIT_INPUT, EXIT_INSUFFICIENT = 1, 3


@cache
def verbs() -> dict[str, EntryPoint]:
    """The installed verbs in registration order."""
    return {ep.name: ep for ep in entry_points(group=VERB_GROUP)}


def summary(ep: EntryPoint) -> str:
    """First line of the verb module's docstring, read from source: `--help` imports no verb (nor torch)."""
    spec = importlib.util.find_spec(ep.module)
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as handle:
        doc = ast.get_docstring(ast.parse(handle.read())) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first.split("`: ", 1)[-1]  # "`netorigin predict`: one case ..." -> "one case ..."


def install_hint(ep: EntryPoint) -> str:
    extras = ",".join(ep.extras) or "export"
    return f"pip install 'netorigin[{extras}]'"


def _missing_extra(ep: EntryPoint, module: str) -> click.Command:
    def fail(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'netorigin {ep.name}' needs the {'/'.join(ep.extras) or 'export'} extra "
                                   f"({module} is not installed): {install_hint(ep)}")

    return click.Command(ep.name, help=summary(ep), callback=fail,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                         params=[click.Argument(["args"], nargs=-1)])


def _is_third_party(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] != "netorigin"


class PluginGroup(click.Group):
    """Loads a verb's module on demand and reports a missing extra instead of a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(verbs())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        ep = verbs().get(name)
        if ep is None:
            return None
        try:
            return ep.load()
        except ModuleNotFoundError as exc:
            if _is_third_party(exc.name) and ep.extras:
                return _missing_extra(ep, exc.name)
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary(ep)) for name, ep in verbs().items()])


@click.group(cls=PluginGroup)
@click.version_option(package_name="netorigin")
def cli() -> None:
    """netorigin: small intestine / pancreas / uncertain from H&E slides of NET liver metastases."""


def main() -> None:
    """Entry point: typed errors become one line on stderr and a non-zero exit code."""
    try:
        code = cli.main(standalone_mode=False, prog_name="netorigin")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, like every other error: the problem, then where help is
        verb = exc.ctx.command_path if exc.ctx is not None else "netorigin"
        click.echo(f"error: {' '.join(exc.format_message().split())} (see '{verb} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except InsufficientTissueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INSUFFICIENT)
    except NetoriginError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
