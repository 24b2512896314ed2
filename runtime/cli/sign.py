"""`netorigin sign`: add an Ed25519 signature over a verified model's metadata (and so its graph and bands)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..families import load_any_contract, save_model
from ..model.signing import PASSPHRASE_ENV, is_encrypted, sign_model, verify_signature


def passphrase(private_key: str) -> str | None:
    """The passphrase of an encrypted key: the environment, else a hidden prompt on a terminal, else none."""
    if not is_encrypted(private_key):
        return None
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if sys.stdin.isatty():
        return click.prompt("passphrase", hide_input=True)
    return None


@click.command("sign")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--key", "private_key", required=True, type=click.Path(dir_okay=False),
              help="Private key from `netorigin keygen`.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Signed model to write (default: replace MODEL).")
def command(model: str, private_key: str, out: str | None) -> None:
    """Sign MODEL; any later change to its metadata or graph makes every runtime refuse it.

    An encrypted key's passphrase comes from NETORIGIN_KEY_PASSPHRASE or, on a terminal, a hidden prompt
    (never from the command line, where `ps` and shell history would show it).
    """
    contract = load_any_contract(model)
    signed = sign_model(contract, private_key, passphrase(private_key))
    target = Path(out) if out else contract.path
    status = verify_signature(save_model(target, signed, previous=contract))  # what was written verifies
    click.echo(f"signed {target} with key {status.key_id}")
