"""`netorigin doctor`: what this install can do and why, and whether a model can run here."""

from __future__ import annotations

import json
import sys

import click

from ..ops.doctor import can_run, host_report, model_report


def _lines(report: dict) -> list[str]:
    ort, ov, slide = report["onnxruntime"], report["openvino"], report["openslide"]
    providers = ", ".join(f"{name} {state}" for name, state in ort["providers"].items()) or "none"
    lines = [
        f"netorigin    {report['netorigin']} on Python {report['python']} ({report['executable']})",
        f"onnxruntime  {', '.join(f'{d} {v}' for d, v in ort['distributions'].items()) or 'NOT INSTALLED'}",
        f"providers    {providers}",
        "openvino     " + (f"{ov['version']} ({'bf16 on this CPU' if ov['bf16'] else 'no bf16 here'})"
                             if ov["installed"] else "not installed"),
        f"cpu          {report['cpu']['cores']} cores, {report['cpu']['instruction_sets']}",
        f"memory       {report['memory']['available_mib']} of {report['memory']['total_mib']} MiB available",
        "openslide    " + (f"{slide['library']} (python {slide['python']}), "
                           f"{'reads' if slide['reads_dicom'] else 'does NOT read'} DICOM" if slide["installed"]
                           else f"CANNOT BE LOADED ({slide['why']})"),
        "extras       " + ", ".join(f"{name} {'yes' if there else 'no'}" for name, there in report["extras"].items()),
        f"trusted keys {', '.join(report['trusted_keys']) or 'none configured (NETORIGIN_TRUSTED_KEY)'}",
    ]
    model = report.get("model")
    if model:
        lines += [f"model        {model['path']}" + ("  (DEMO MODEL, NOT FOR DIAGNOSIS)" if model["demo"] else ""),
                  f"  identity   graph {model['graph_sha256']}, verdict {model['verdict_sha256']}",
                  f"  signature  {model['signature']['state']}"
                  + (f" by key {model['signature']['key_id']}" if model["signature"]["key_id"] else "")]
        if model["family"] == "mri":
            lines.append(f"  mri        Model {model['kind']}: {', '.join(model['sequences'])}"
                         + (f" + {len(model['clinical_fields'])} clinical fields" if model["clinical_fields"] else "")
                         + f" -> {', '.join(model['classes'])}")
        lines.append(f"  auto       {model['auto']['engine']}"
                     + (f" {model['auto']['ov_precision']}" if model["auto"]["engine"] == "openvino" else "")
                     + (f" on {model['auto']['provider']}" if model["auto"].get("provider") else "")
                     + f": {model['auto']['why']}")
        lines += [f"  check      {name}: {summary}" for name, summary in model["fidelity_checks"].items()]
    lines += [f"CANNOT RUN   {problem}" for problem in report["problems"]]
    return lines


@click.command("doctor")
@click.option("--model", "-m", type=click.Path(dir_okay=False), default=None,
              help="Also check this model: identity, signature, fidelity records, and what `auto` runs it on here.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Check the model's signature against this public key (repeatable; default: "
                   "NETORIGIN_TRUSTED_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(model, trusted_keys, as_json) -> None:
    """Say what this install can do (engines and the providers that really start, CPU instruction sets, OpenSlide
    and DICOM, extras, keys, memory) and, with --model, whether and how that model runs here; exit 1 when it cannot
    run here, naming why."""
    report = host_report()
    if model is not None:
        report["model"] = model_report(model, list(trusted_keys))
    report["problems"] = can_run(report)
    click.echo(json.dumps(report, indent=2) if as_json else "\n".join(_lines(report)))
    sys.exit(1 if report["problems"] else 0)
