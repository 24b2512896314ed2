"""Ed25519 signatures over a model's metadata: proof that the model on a scanner is the one that was validated.

The signed payload is every `netorigin.*` metadata string exactly as stored in the file (not a re-encoding of
what one JSON parser made of it), except the signature itself. Those strings hold both digests, and
`verify_signature` recomputes both from the graph and the verdict-deciding fields, so one signature covers the
weights, the bands and everything else in the metadata. A signature on its own proves only that nothing changed
since someone signed; trust comes from the public keys the runtime is given (`--trusted-key`), never from the
key the model carries.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..atomic import write_new
from ..errors import ConfigurationError, MissingDependencyError, SignatureError
from .contract import PREFIX, ModelContract, content_sha256, encode_metadata, verdict_sha256
from .protobuf_fields import read_metadata, replace_metadata

ALGORITHM = "Ed25519"
SIGNATURE_KEY = PREFIX + "signature"
# Domain separation: these bytes can never be mistaken for a signature over anything else.
DOMAIN = b"netorigin model metadata signature v1\n"
INSTALL_HINT = "pip install 'netorigin[signing]'"
# Where an encrypted private key's passphrase comes from (never the command line: `ps` would show it).
PASSPHRASE_ENV = "NETORIGIN_KEY_PASSPHRASE"
# Public keys a runtime trusts when none are given explicitly (paths separated by os.pathsep), CLI and API alike.
TRUSTED_KEYS_ENV = "NETORIGIN_TRUSTED_KEY"


def trusted_keys_from_env() -> list[str]:
    """The trusted public-key paths named by NETORIGIN_TRUSTED_KEY (empty when unset)."""
    return [p for p in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if p]


def crypto(module: str) -> ModuleType:
    """A `cryptography` module (signatures, cluster certificates), or the one-line install hint."""
    try:
        return importlib.import_module(f"cryptography.{module}")
    except ModuleNotFoundError:
        raise MissingDependencyError(f"this needs the `cryptography` package: {INSTALL_HINT}") from None


def _ed25519() -> ModuleType:
    return crypto("hazmat.primitives.asymmetric.ed25519")


def _serialization() -> ModuleType:
    return crypto("hazmat.primitives.serialization")


def signed_payload(props: dict[str, str]) -> bytes:
    """The bytes a signature covers: the stored netorigin.* key/value strings but the signature, sorted by key,
    as a JSON object of strings (unambiguous: every string is escaped and delimited)."""
    fields = {k: v for k, v in props.items() if k.startswith(PREFIX) and k != SIGNATURE_KEY}
    return DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(raw_public_key: bytes) -> str:
    """The name of a public key: the SHA-256 of its 32 raw bytes, in full (a prefix could be forged)."""
    return hashlib.sha256(raw_public_key).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """A trusted Ed25519 public key, read from a PEM file."""

    raw: bytes
    path: Path

    @property
    def key_id(self) -> str:
        """The key's SHA-256 fingerprint, as reports and `inspect` show it."""
        return key_id(self.raw)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{what} file not found", path) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} file ({exc.strerror})", path) from None


def load_public_key(path: str | Path) -> PublicKey:
    """Read a PEM SubjectPublicKeyInfo Ed25519 key (as `netorigin keygen` or `openssl pkey -pubout` write)."""
    path = Path(path)
    serialization, ed25519 = _serialization(), _ed25519()
    try:
        key = serialization.load_pem_public_key(_read(path, "public key"))
    except ValueError:
        raise ConfigurationError("not a PEM public key", path) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigurationError(f"not an {ALGORITHM} public key", path)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw=raw, path=path)


def _load_private_key(path: Path, passphrase: str | None) -> Any:
    serialization, ed25519 = _serialization(), _ed25519()
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"),
                                                 passphrase.encode() if passphrase else None)
    except TypeError:
        raise ConfigurationError("the private key is encrypted: give its passphrase" if not passphrase else
                                 "the private key is not encrypted: give no passphrase", path) from None
    except ValueError:
        raise ConfigurationError("not a PEM private key, or wrong passphrase", path) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigurationError(f"not an {ALGORITHM} private key", path)
    return key


def generate_keypair(private_path: str | Path, public_path: str | Path, passphrase: str | None = None) -> str:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) and its public key (PEM); return the key id."""
    serialization, ed25519 = _serialization(), _ed25519()
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigurationError("already exists; refusing to overwrite a key", path)
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public = key.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_new(private_path, private_pem, 0o600)
    write_new(public_path, public_pem, 0o644)
    return key_id(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def is_encrypted(private_key_path: str | Path) -> bool:
    """Whether a PEM private key needs a passphrase (so a CLI knows to ask for one)."""
    return b"ENCRYPTED" in _read(Path(private_key_path), "private key")


def sign_model(contract: ModelContract, private_key_path: str | Path, passphrase: str | None = None) -> bytes:
    """The model's bytes with a signature over its stored metadata added (an earlier signature is replaced);
    the graph and every other metadata string stay byte for byte as they were."""
    serialization = _serialization()
    key = _load_private_key(Path(private_key_path), passphrase)
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    props = read_metadata(contract.model_bytes)
    record = {"algorithm": ALGORITHM, "public_key": base64.b64encode(raw_public).decode(),
              "key_id": key_id(raw_public), "signature": base64.b64encode(key.sign(signed_payload(props))).decode()}
    return replace_metadata(contract.model_bytes, props | encode_metadata({SIGNATURE_KEY: record}))


@dataclass(frozen=True)
class SignatureStatus:
    """What a report says about the signature: unsigned; unchecked (no `cryptography` here); intact (verified,
    but no trusted key was given to say whose); trusted (verified and by one of the trusted keys)."""

    state: str
    key_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"state": self.state, "key_id": self.key_id}


def _decode(value: str, size: int, what: str, path: Path) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise SignatureError(f"signature field {what} is not base64", path) from None
    if len(raw) != size:
        raise SignatureError(f"signature field {what} has {len(raw)} bytes, not {size}", path)
    return raw


def _check_digests(contract: ModelContract) -> None:
    """A signature vouches for the stored digests; make sure they are the graph's and the metadata's own. A
    contract from `load_contract` was checked there (hashing the weights once is enough); one built by hand is
    checked here."""
    if contract.digests_verified:
        return
    stored = contract.meta.get(PREFIX + "sha256"), contract.meta.get(PREFIX + "verdict_sha256")
    if stored != (content_sha256(contract.model_bytes), verdict_sha256(contract.meta)):
        raise SignatureError("the stored digests do not match the model's graph and metadata", contract.path)


def verify_signature(contract: ModelContract, trusted: list[PublicKey] | None = None) -> SignatureStatus:
    """Check the model's signature; with trusted keys, refuse a model not signed by one of them.

    Without trusted keys an unsigned model is accepted, and a signed one must still verify where `cryptography`
    is installed (an edit after signing is refused) — but only the trusted keys say *who* signed it.
    """
    _check_digests(contract)
    record = contract.meta.get(SIGNATURE_KEY)
    if record is None:
        if trusted:
            raise SignatureError("model is unsigned, but only models signed by a trusted key are accepted "
                                 f"(trusted: {', '.join(k.key_id for k in trusted)})", contract.path)
        return SignatureStatus("unsigned")
    if not trusted and importlib.util.find_spec("cryptography") is None:
        return SignatureStatus("unchecked", record["key_id"])
    ed25519 = _ed25519()
    raw_public = _decode(record["public_key"], 32, "public_key", contract.path)
    signature = _decode(record["signature"], 64, "signature", contract.path)
    if record["key_id"] != key_id(raw_public):
        raise SignatureError("signature key_id does not match its public key", contract.path)
    invalid = importlib.import_module("cryptography.exceptions").InvalidSignature
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(raw_public).verify(
            signature, signed_payload(read_metadata(contract.model_bytes)))
    except invalid:
        raise SignatureError(f"signature by key {record['key_id']} does not match the model: its metadata was "
                             "changed after signing", contract.path) from None
    if not trusted:
        return SignatureStatus("intact", record["key_id"])
    if all(k.raw != raw_public for k in trusted):
        raise SignatureError(f"signed by key {record['key_id']}, which is not a trusted key (trusted: "
                             f"{', '.join(f'{k.key_id} from {k.path}' for k in trusted)})", contract.path)
    return SignatureStatus("trusted", record["key_id"])
