"""A small certificate authority for a Dask cluster's mutual TLS: one CA, and a certificate and key for the
scheduler, the workers and the client, for a test or a first set-up (a hospital PKI can replace every file).

Dask checks that each peer's certificate is signed by the cluster's CA (not host names), so one CA per cluster is
what admits a machine. Private keys are written mode 0600 and nothing is ever overwritten.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Sequence
from pathlib import Path

from ..atomic import write_new
from ..errors import ConfigurationError, OutputError
from ..model.signing import crypto

ROLES = ("scheduler", "worker", "client")
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_DAYS = 365


def certificate_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Certificate and key path for the CA and each role, as `cluster-certs` writes them."""
    return {role: (folder / f"{role}.pem", folder / f"{role}-key.pem") for role in ("ca", *ROLES)}


def _name(common_name: str):
    x509 = crypto("x509")
    return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])


def _host_names(hosts: Sequence[str]) -> list:
    """Subject alternative names; a host that is neither an IP address nor an ASCII DNS name is refused."""
    x509 = crypto("x509")
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or not host.isascii() or any(c in host for c in " /:@"):
                raise ConfigurationError(f"--host {host!r} is neither an IP address nor an ASCII host name "
                                         "(write internationalised names in their xn-- form)") from None
            names.append(x509.DNSName(host))
    return names


def _certificate(subject: str, key, issuer_name, issuer_key, days: int, *, ca: bool, hosts: Sequence[str] = (),
                 usages: Sequence = ()):
    x509 = crypto("x509")
    hashes = crypto("hazmat.primitives.hashes")
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name or _name(subject))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True))
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_host_names(hosts)), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_cluster_certificates(folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = DEFAULT_DAYS
                              ) -> dict[str, tuple[Path, Path]]:
    """Write a new CA and a certificate/key pair per role into `folder` (created if needed); refused, with
    nothing written, if any of those files exists. `hosts` go into the scheduler's and workers' certificates
    (for tools that check host names; Dask itself checks only the CA)."""
    ec = crypto("hazmat.primitives.asymmetric.ec")
    serialization = crypto("hazmat.primitives.serialization")
    oid = crypto("x509").oid.ExtendedKeyUsageOID
    files = certificate_files(Path(folder))
    existing = [path.name for pair in files.values() for path in pair if path.exists()]
    if existing:
        raise OutputError(f"would overwrite {', '.join(existing)}: certificates and keys are never replaced; "
                          "choose an empty folder", folder)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(f"netorigin cluster CA {secrets.token_hex(4)}", ca_key, None, None, days, ca=True)
    pairs = {"ca": (ca_cert, ca_key)}
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [oid.CLIENT_AUTH] if role == "client" else [oid.SERVER_AUTH, oid.CLIENT_AUTH]
        pairs[role] = (_certificate(f"netorigin dask {role}", key, ca_cert.subject, ca_key, days, ca=False,
                                    hosts=() if role == "client" else hosts, usages=usages), key)
    try:  # everything is built before the folder is touched
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder ({exc.strerror})", folder) from None
    for role, (cert, key) in pairs.items():
        cert_path, key_path = files[role]
        write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        write_new(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600)
    return files
