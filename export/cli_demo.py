"""`netorigin demo`: the whole chain on a synthetic cohort; every output says DEMO, NOT FOR DIAGNOSIS."""

from __future__ import annotations

from pathlib import Path

import click

from netorigin.calibration.rater_tables import tables_markdown
from netorigin.runtime.atomic import ensure_writable_dir
from netorigin.runtime.cli.options import quiet_option
from netorigin.runtime.model.contract import DEMO_WARNING
from netorigin.runtime.progress import say
from netorigin.runtime.slide.verdict import verdict_text

from .demo import FULL, SMALL, run_demo
from .mri_demo import MRI_FULL, MRI_SMALL, run_mri_demo


@click.command("demo")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("netorigin-demo"),
              show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--small", is_flag=True, help="A tiny cohort and 16 patches per case (for tests; under a minute).")
@click.option("--mri", is_flag=True, help="Seed 002 instead: synthetic liver MRI, Models A and G trained, held-out "
              "patients predicted from their DICOM series, the seven-way and three-way tables printed.")
@quiet_option
def command(out: Path, seed: int, small: bool, mri: bool, quiet: bool) -> None:
    """Generate a synthetic cohort, embed, fit, calibrate, export, then predict held-out cases."""
    ensure_writable_dir(out)
    if mri:
        _mri_demo(out, seed, small, quiet)
        return
    click.echo(f"*** {DEMO_WARNING}: synthetic slides, random-weight ResNet50 ***")
    summary = run_demo(out, SMALL if small else FULL, seed, echo=say, quiet=quiet)
    click.echo("")
    click.echo(f"{'case':<10}{'truth':<17}{'verdict':<17}{'S':>10}   band (c = {summary['confidence']:g})")
    for r in summary["test_cases"]:
        click.echo(f"{r['case']:<10}{r['truth']:<17}{verdict_text(r['verdict']):<17}{r['patient_sum']:>10.2f}   "
                   f"({r['band'][0]:.2f}, {r['band'][1]:.2f})")
    click.echo("")
    click.echo(f"patient accuracy (pancreas / small intestine cases): {summary['patient_accuracy_labelled']:.2f}, "
               f"misclassified: {summary['labelled_misclassified']}; other-origin cases called uncertain: "
               f"{summary['other_uncertain_fraction']:.2f}")
    click.echo(f"{summary['timings_s']['total']:.0f} s, {summary['disk_bytes'] / 1e6:.0f} MB in {out} "
               f"(reports/, model/, demo-summary.json, demo-sums.png)")
    click.echo(f"*** {DEMO_WARNING} ***")


def _mri_demo(out: Path, seed: int, small: bool, quiet: bool) -> None:
    plan = MRI_SMALL if small else MRI_FULL
    click.echo(f"*** {DEMO_WARNING}: synthetic MRI phantoms, {plan.architecture} trained from random weights ***")
    summary = run_mri_demo(out, plan, seed, echo=say, quiet=quiet)
    click.echo("")
    click.echo(tables_markdown(summary["tables"]))
    click.echo(f"{summary['timings_s']['total']:.0f} s; models, reports and tables in {out} "
               "(mri-demo-summary.json, mri-demo-tables.md)")
    click.echo(f"*** {DEMO_WARNING} ***")
