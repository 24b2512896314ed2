"""`netorigin inspect`: the model's metadata contract, checked (schema and content hash)."""

from __future__ import annotations

import json

import click

from ..families import load_any_contract
from ..model.contract import DEMO_WARNING, PREFIX
from ..model.signing import SignatureStatus, load_public_key, trusted_keys_from_env, verify_signature
from ..mri.contract import MriContract

SIGNATURE_TEXT = {
    "unsigned": "none",
    "unchecked": "by key {key}, NOT checked (install netorigin[signing])",
    "intact": "by key {key}, intact (give --trusted-key to check whose key it is)",
    "trusted": "by key {key}, a trusted key",
}


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the decoded metadata as JSON.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Check the signature is by this public key (repeatable; default: NETORIGIN_TRUSTED_KEY).")
def command(model: str, as_json: bool, trusted_keys: tuple[str, ...]) -> None:
    """Show MODEL's metadata; fails if the schema is unknown, a digest or the signature does not match."""
    contract = load_any_contract(model)
    keys = trusted_keys or trusted_keys_from_env()
    signature = verify_signature(contract, [load_public_key(k) for k in keys])
    if as_json:
        click.echo(json.dumps(contract.meta, indent=2, sort_keys=True))
        return
    if isinstance(contract, MriContract):
        click.echo("\n".join(_mri_lines(contract, signature)))
        return
    prov, record = contract.provenance, contract.record
    patch = contract.patch
    lines = _identity_lines(contract, signature, "bands, patch geometry, case rules, precision, record") + [
        f"classes     {contract.classes}  (decision > 0 => class '1')",
        f"embedder    {record.embedder.name}  weights sha256 {record.embedder.weights_sha256[:16]}…"
        + ("" if record.embedder.trained_on_patients_sha256 is None
           else f"  (fine-tuned on {len(record.embedder.trained_on_patients_sha256)} patients)"),
        f"head        {json.dumps(prov['head'])}  fitted on {len(record.head.fit_patients_sha256)} patients",
        f"precision   {contract.precision}",
        f"patch       {patch['field_of_view_um']} um -> {patch['pixels']} px {patch['layout']} {patch['dtype']}, "
        f"anchor {patch['anchor']}, white filter {patch['white_filter']}",
        f"case        {contract.patches_per_case} patches per case",
        f"cohort      {json.dumps(prov['cohort'])}",
        f"versions    {json.dumps(prov['versions'])}",
    ]
    if record.calibration is not None:
        c = record.calibration
        lines.append(f"calibration {c.origin}; decisions: {c.decisions}; {c.n_pi} + {c.n_other} patients"
                     + (f"; IN-SAMPLE ({c.in_sample_patients} patients)" if c.in_sample else "")
                     + ("" if c.checked_against_fit else "; held-out NOT checked"))
    checks = ({"fidelity vs fp32": record.fidelity_vs_fp32} if record.fidelity_vs_fp32 else {}) | record.engine_checks
    for name, check in checks.items():
        lines.append(f"check       {name}: {'passed' if check.passed else 'FAILED'}, {check.summary()}; measured "
                     f"on {check.measured_on.engine} {check.measured_on.version} {check.measured_on.provider} "
                     f"({check.measured_on.hardware})")
    if contract.bands:
        lines.append(f"bands       default c = {contract.default_confidence:g}")
        lines += [f"  c = {b.c:<8.4g} pi inside {b.pi_inside:<4d} ({b.lower:.6g}, {b.upper:.6g})"
                  for b in contract.bands]
    else:
        lines.append("bands       NONE (exported with --no-bands: majority vote only, no abstention)")
    click.echo("\n".join(lines))


def _identity_lines(contract, signature: SignatureStatus, verdict_covers: str) -> list[str]:
    """What every model family shows first: the demo warning, path, schema, both digests and the signature."""
    return ([f"*** {DEMO_WARNING} ***"] if contract.is_demo else []) + [
        f"model       {contract.path} (schema {contract.meta[PREFIX + 'schema']})",
        f"identity    graph sha256 {contract.identity['graph_sha256']}  (graph and weights)",
        f"            verdict sha256 {contract.identity['verdict_sha256']}  ({verdict_covers})",
        "            both digests verified",
        f"signature   {SIGNATURE_TEXT[signature.state].format(key=signature.key_id)}"]


def _mri_lines(contract: MriContract, signature: SignatureStatus) -> list[str]:
    """An MRI lesion model (seed 002): its inputs, clinical table, classes, patient rule and network."""
    inputs, record = contract.inputs, contract.record
    clinical = contract.clinical
    return _identity_lines(contract, signature, "inputs, clinical table, classes, patient rule, record") + [
        f"family      MRI lesion model, Model {contract.kind}",
        f"sequences   {', '.join(contract.sequences)} (region drawn on {contract.sequences[0]})",
        f"groups      {inputs['image_size']} x {inputs['image_size']} px at {inputs['spacing_mm']} mm; "
        f"scaling {json.dumps(inputs['scaling'])}; {inputs['roi_rule']}",
        "clinical    " + ("none" if clinical is None else
                          f"{len(clinical)} fields: {', '.join(f.name for f in clinical)}"),
        f"classes     {', '.join(contract.classes)}",
        f"patient     {contract.meta[PREFIX + 'patient_rule']}",
        f"network     {json.dumps(record['network'])}",
        f"trained on  {len(record['trained_on_patients_sha256'])} patients",
        f"provenance  {json.dumps(contract.meta[PREFIX + 'provenance'])}"]
