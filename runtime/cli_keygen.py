"""`netorigin keygen`: a new Ed25519 key pair for signing models (keep the private key off the scanners)."""

from __future__ import annotations

import click

from .signing import generate_keypair


@click.command("keygen")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False),
              help="Private key file to create (PKCS#8 PEM, mode 0600); never overwritten.")
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False),
              help="Public key file to create (PEM): give it to every runtime as --trusted-key.")
@click.option("--passphrase", envvar="NETORIGIN_KEY_PASSPHRASE", default=None,
              help="Encrypt the private key with this passphrase (or set NETORIGIN_KEY_PASSPHRASE).")
def command(private_path: str, public_path: str, passphrase: str | None) -> None:
    """Create a key pair for `netorigin sign` and `--trusted-key`."""
    key = generate_keypair(private_path, public_path, passphrase)
    click.echo(f"key id {key}: private {private_path}, public {public_path}")
