"""The `netorigin` command. Verbs are imported only when run, so `predict` never loads the training stack."""

from __future__ import annotations

import importlib
import sys

import click

from .errors import InsufficientTissueError, NetoriginError

VERBS = {
    "predict": ("netorigin.runtime.cli_predict", "Predict the primary site of one case from its slides."),
    "batch": ("netorigin.runtime.cli_batch", "Predict many cases from a manifest; resumable."),
    "inspect": ("netorigin.runtime.cli_inspect", "Show a model's metadata contract and check its integrity."),
    "embed": ("netorigin.export.cli_embed", "Embed training patches (folder or slides) with a ResNet50."),
    "fit": ("netorigin.export.cli_fit", "Fit the patch classifier (PCA + SVM by default) on embeddings."),
    "export": ("netorigin.export.cli_export", "Export embedder + classifier + bands as one ONNX model."),
    "calibrate": ("netorigin.calibration.cli_calibrate", "Compute the uncertainty bands (c = k/o)."),
    "evaluate": ("netorigin.calibration.cli_evaluate", "Run the paper's evaluation protocols."),
    "demo": ("netorigin.export.cli_demo", "Run the whole chain on a synthetic cohort (DEMO, not diagnosis)."),
}
TRAINING_STACK = ("torch", "torchvision", "sklearn", "matplotlib", "skl2onnx", "onnx", "scipy", "tifffile")
EXIT_INPUT, EXIT_INSUFFICIENT = 1, 3


class LazyGroup(click.Group):
    """Loads a verb's module on demand and reports a missing extra instead of a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module_name, help_text = VERBS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in TRAINING_STACK:
                return _missing_extra(name, help_text, exc.name)
            raise
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List verbs from the table above, without importing them (and torch) just to print help."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in VERBS.items()])


def _missing_extra(name: str, help_text: str, module: str) -> click.Command:
    def fail() -> None:
        raise click.ClickException(f"'netorigin {name}' needs the training extra ({module} is not installed): "
                                   "pip install 'netorigin[export]'")

    return click.Command(name, help=help_text, callback=fail, context_settings={"ignore_unknown_options": True},
                         params=[click.Argument(["args"], nargs=-1)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="netorigin")
def cli() -> None:
    """netorigin: small intestine / pancreas / uncertain from H&E slides of NET liver metastases."""


def main() -> None:
    """Entry point: typed errors become one line on stderr and a non-zero exit code."""
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
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
