"""`netorigin verify`: audit replay — re-run a case from its report and say whether it is reproduced bit for bit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import NetoriginError
from ..mri.replay import audit_mri, check_mri_report, is_mri_report
from ..reports.compare import load_json_report
from ..reports.replay import audit, check_report

EXIT_REPRODUCED, EXIT_DIFFERS, EXIT_CANNOT = 0, 1, 2


@click.command("verify")
@click.argument("report", type=click.Path(dir_okay=False))
@click.option("--model", "-m", required=True, type=click.Path(dir_okay=False),
              help="The model the report names (its graph and verdict digests must match).")
@click.option("--slides", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder searched (with its subfolders) for the report's slides, by content; default: where the "
                   "report says they were.")
@click.option("--annotations", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder searched for the report's annotation files, by SHA-256; default: the slides' folders.")
@click.option("--series", type=click.Path(file_okay=False, exists=True), default=None,
              help="MRI reports: folder searched (with its subfolders) for the case's series and region of interest, "
                   "by content; default: where the report says they were.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Ed25519 public key the model must be signed by, as for predict (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
def command(report, model, slides, annotations, series, trusted_keys, as_json) -> None:
    """Re-run the case of REPORT (a CASE.json of predict or batch) with the same model, slides (found by content),
    annotations (by digest), seed, confidence level, region rules, level and engine; for an MRI lesion report,
    with the same model, series and region (found by content) and clinical record. Exit 0 when every field is
    reproduced bit for bit, 1 with what differs, 2 when it cannot be replayed here."""
    try:
        recorded = load_json_report(Path(report))
        if is_mri_report(recorded):
            if slides or annotations:
                raise click.UsageError("--slides and --annotations are for slide reports; an MRI report takes --series")
            check_mri_report(recorded, Path(report))
            found = audit_mri(recorded, model, Path(series) if series else None, list(trusted_keys) or None)
        else:
            if series:
                raise click.UsageError("--series is for MRI reports; a slide report takes --slides")
            check_report(recorded, Path(report))
            found = audit(recorded, model, Path(slides) if slides else None,
                          Path(annotations) if annotations else None, list(trusted_keys) or None)
    except NetoriginError as exc:
        click.echo(f"error: cannot verify: {exc}", err=True)
        sys.exit(EXIT_CANNOT)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
    elif found.reproduced and is_mri_report(recorded):
        click.echo(f"{report}: reproduced bit for bit (case {found.case_id}: {recorded['lesion_class']}, "
                   f"Model {recorded['model_kind']}, {len(recorded['groups'])} image groups)")
    elif found.reproduced:
        click.echo(f"{report}: reproduced bit for bit (case {found.case_id}: {recorded.get('verdict') or 'no verdict'}"
                   f", S = {recorded.get('patient_sum')}, seed {recorded['seed']})")
    else:
        click.echo(f"{report}: NOT reproduced (case {found.case_id}), {len(found.differences)} difference(s):")
        for line in found.differences:
            click.echo(f"  - {line}")
    if not as_json:
        for line in found.context:
            click.echo(f"  {line}")
    sys.exit(EXIT_REPRODUCED if found.reproduced else EXIT_DIFFERS)
