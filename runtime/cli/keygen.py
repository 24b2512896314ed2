"""`netorigin keygen`: a new Ed25519 key pair for signing models (keep the private key off the scanners)."""

from __future__ import annotations

import os

import click

from ..model.signing import PASSPHRASE_ENV, generate_keypair


@click.command("keygen")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False),
              help="Private key file to create (PKCS#8 PEM, mode 0600); never overwritten.")
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False),
              help="Public key file to create (PEM): give it to every runtime as --trusted-key.")
@click.option("--encrypt", is_flag=True,
              help="Encrypt the private key: passphrase from NETORIGIN_KEY_PASSPHRASE, else a hidden prompt.")
def command(private_path: str, public_path: str, encrypt: bool) -> None:
    """Create a key pair for `netorigin sign` and `--trusted-key`."""
    secret = None
    if encrypt:
        secret = os.environ.get(PASSPHRASE_ENV) or click.prompt("passphrase", hide_input=True,
                                                                confirmation_prompt=True)
    key = generate_keypair(private_path, public_path, secret)
    click.echo(f"key id {key}: private {private_path}, public {public_path}")
