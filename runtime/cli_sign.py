"""`netorigin sign`: add an Ed25519 signature over a verified model's metadata (and so its graph and bands)."""

from __future__ import annotations

from pathlib import Path

import click

from .atomic import write_bytes_atomic
from .contract import load_contract
from .signing import sign_model


@click.command("sign")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--key", "private_key", required=True, type=click.Path(dir_okay=False),
              help="Private key from `netorigin keygen`.")
@click.option("--passphrase", envvar="NETORIGIN_KEY_PASSPHRASE", default=None,
              help="The private key's passphrase (or set NETORIGIN_KEY_PASSPHRASE).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Signed model to write (default: replace MODEL).")
def command(model: str, private_key: str, passphrase: str | None, out: str | None) -> None:
    """Sign MODEL; any later change to its metadata or graph makes every runtime refuse it."""
    contract = load_contract(model)
    signed = sign_model(contract, private_key, passphrase)
    target = Path(out) if out else contract.path
    write_bytes_atomic(target, signed)
    key_id = load_contract(target).meta["netorigin.signature"]["key_id"]
    click.echo(f"signed {target} with key {key_id}")
