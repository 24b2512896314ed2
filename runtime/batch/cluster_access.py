"""Who may reach the cluster that reads patient slides: the scheduler address policy and mutual TLS.

A Dask scheduler runs whatever a connected client submits, on workers that read slides and write reports. So a
plaintext scheduler address off this host is refused unless `--insecure-cluster` says the network is trusted; a
`tls://` address needs the cluster's CA and this client's certificate and key (options, or Dask's own
`distributed.comm.tls.*` configuration), and the scheduler's certificate is checked against that CA, and ours by
the scheduler, before any case is sent. Every check that needs no connection runs before a client is created.
"""

from __future__ import annotations

import importlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError, MissingDependencyError

INSTALL_HINT = "pip install 'netorigin[dask]'"
PROTOCOLS = ("tcp", "tls")  # Dask's websocket and UCX protocols are not offered: their handshakes differ
HANDSHAKE_TIMEOUT_S = 10.0


def distributed_module() -> Any:
    """Dask distributed, imported only when a cluster is asked for (an optional extra)."""
    try:
        return importlib.import_module("distributed")
    except ModuleNotFoundError:
        raise MissingDependencyError(f"--scheduler needs Dask distributed: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class ClusterAccess:
    """Where the work runs and how this client proves itself: no scheduler (this machine), or a Dask scheduler
    address with the TLS files (None: Dask's configuration) and the explicit trust of a plaintext network."""

    scheduler: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False

    @property
    def _parts(self):
        address = self.scheduler or ""
        return urlsplit(address if "://" in address else f"tcp://{address}")

    @property
    def encrypted(self) -> bool:
        return self._parts.scheme == "tls"

    @property
    def loopback(self) -> bool:
        host = self._parts.hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: never resolved here, so never taken for this host
            return False

    @property
    def scheme(self) -> str:
        """What reports record: local, tls, tcp-loopback or tcp-insecure."""
        if self.scheduler is None:
            return "local"
        if self.encrypted:
            return "tls"
        return "tcp-loopback" if self.loopback else "tcp-insecure"

    def as_record(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "scheme": self.scheme, "insecure_cluster": self.insecure}

    def check(self) -> None:
        """Refuse, in one line and without any connection, what must not reach a cluster."""
        tls_files = [name for name, value in (("--tls-ca", self.tls_ca), ("--tls-cert", self.tls_cert),
                                              ("--tls-key", self.tls_key)) if value is not None]
        if self.scheduler is None:
            if tls_files or self.insecure:
                raise ConfigurationError(f"{', '.join(tls_files) or '--insecure-cluster'} needs --scheduler")
            return
        self._check_address()
        if not self.encrypted:
            if tls_files:
                raise ConfigurationError(f"{', '.join(tls_files)} needs a tls:// scheduler address, not "
                                         f"{self.scheduler}")
            if not self.loopback and not self.insecure:
                raise ConfigurationError(
                    f"refusing the plaintext scheduler address {self.scheduler}: anyone who reaches it can run code "
                    "beside the slides and read reports in transit; use tls:// with --tls-ca, --tls-cert and "
                    "--tls-key, or --insecure-cluster on a network you trust")
            return
        if self.insecure:
            raise ConfigurationError(f"--insecure-cluster is for plaintext tcp:// addresses, not {self.scheduler}")
        files = self._tls_files()
        missing = [name for name, value in zip(("--tls-ca", "--tls-cert", "--tls-key"), files, strict=True)
                   if not value]
        if missing:
            raise ConfigurationError(f"{self.scheduler} needs {', '.join(missing)} (or Dask's "
                                     "distributed.comm.tls.ca-file / client.cert / client.key): the scheduler "
                                     "admits only clients with a certificate from the cluster's CA")
        for value in files:
            if "\n" not in value and not Path(value).is_file():  # Dask also takes inline PEM text
                raise ConfigurationError("TLS file not found", value)

    def _check_address(self) -> None:
        """A tcp:// or tls:// address with a host and a port (Dask needs the port; a guess would test one port
        and connect to another)."""
        try:
            parts = self._parts
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"not a scheduler address: {self.scheduler} ({exc})") from None
        if parts.scheme not in PROTOCOLS:
            raise ConfigurationError(f"scheduler protocol {parts.scheme}:// is not offered (use tls://, or tcp:// on "
                                     "loopback)")
        if not parts.hostname or port is None:
            raise ConfigurationError(f"the scheduler address {self.scheduler} needs a host and a port "
                                     "(e.g. tls://scheduler:8786)")

    def _tls_files(self) -> tuple[str | None, str | None, str | None]:
        """CA, certificate and key: the options, else Dask's configuration (a key may sit in the certificate file)."""
        distributed_module()  # the extra that brings Dask's configuration
        config = importlib.import_module("dask").config
        ca = self.tls_ca or config.get("distributed.comm.tls.ca-file", None)
        if self.tls_cert is not None:  # a certificate given here takes its key from here, never from the config
            cert, key = self.tls_cert, self.tls_key or self.tls_cert
        else:
            cert = config.get("distributed.comm.tls.client.cert", None)
            key = self.tls_key or config.get("distributed.comm.tls.client.key", None) or cert
        return (None if ca is None else str(ca), None if cert is None else str(cert),
                None if key is None else str(key))

    def security(self) -> Any:
        """Dask's Security for this client: mutual TLS with encryption required, or None for plaintext. The files
        are loaded here (a key that is not the certificate's, a CA file without a certificate: one line)."""
        if not self.encrypted:
            return None
        ca, cert, key = self._tls_files()
        try:
            security = distributed_module().security.Security(tls_ca_file=ca, tls_client_cert=cert,
                                                               tls_client_key=key, require_encryption=True)
            security.get_connection_args("client")  # builds the SSL context: every file is read and matched
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigurationError(f"the TLS files for {self.scheduler} cannot be used "
                                     f"({getattr(exc, 'reason', None) or exc})") from None
        return security

    def check_scheduler(self, security: Any, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> None:
        """One TLS handshake before any task: the scheduler's certificate must be signed by our CA, and the
        scheduler must accept ours (Dask's scheduler speaks first, so a refusal arrives as an alert on the
        first read)."""
        context = security.get_connection_args("client")["ssl_context"]
        parts = self._parts
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as raw, \
                    context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
                tls.recv(1)
        except ssl.SSLCertVerificationError as exc:
            raise ConfigurationError(f"the Dask scheduler at {self.scheduler} presents a certificate that the "
                                     f"given CA did not sign ({exc.verify_message}); no case was sent") from None
        except ssl.SSLError as exc:
            raise ConfigurationError(f"the Dask scheduler at {self.scheduler} refused this client's certificate, "
                                     f"or does not speak TLS ({exc.reason}); no case was sent") from None
        except TimeoutError:
            return  # a scheduler that says nothing yet: Dask's own connection decides
        except OSError as exc:
            raise ConfigurationError(f"cannot reach the Dask scheduler at {self.scheduler} ({exc})") from None
