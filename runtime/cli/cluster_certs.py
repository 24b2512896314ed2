"""`netorigin cluster-certs`: a CA and certificates for the Dask cluster's mutual TLS (a test or a first set-up)."""

from __future__ import annotations

from pathlib import Path

import click

from ..batch.cluster_certs import DEFAULT_DAYS, DEFAULT_HOSTS, make_cluster_certificates


@click.command("cluster-certs")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", "hosts", multiple=True, default=DEFAULT_HOSTS, show_default=True,
              help="Host name or IP address for the scheduler's and workers' certificates (repeatable).")
@click.option("--days", type=click.IntRange(1), default=DEFAULT_DAYS, show_default=True, help="Validity.")
def command(folder: Path, hosts: tuple[str, ...], days: int) -> None:
    """Write ca.pem and a certificate/key pair for the scheduler, the workers and the client into FOLDER (keys
    mode 0600; an existing file is never overwritten)."""
    files = make_cluster_certificates(folder, hosts, days)
    ca, ca_key = files["ca"]
    scheduler, worker, client = (files[role] for role in ("scheduler", "worker", "client"))
    click.echo(f"CA {ca} (keep {ca_key.name} off the cluster: it admits new machines)")
    click.echo(f"scheduler: dask scheduler --protocol tls --tls-ca-file {ca} --tls-cert {scheduler[0]} "
               f"--tls-key {scheduler[1]}")
    click.echo(f"workers:   dask worker tls://SCHEDULER:8786 --tls-ca-file {ca} --tls-cert {worker[0]} "
               f"--tls-key {worker[1]}")
    click.echo(f"netorigin: --scheduler tls://SCHEDULER:8786 --tls-ca {ca} --tls-cert {client[0]} "
               f"--tls-key {client[1]}")
