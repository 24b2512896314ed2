"""Ed25519 model signatures: keygen, sign, and runtimes that accept only trusted keys."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from netorigin.runtime.errors import ConfigurationError, ModelError, SignatureError
from netorigin.runtime.model.contract import PREFIX, ModelContract, load_contract, with_metadata
from netorigin.runtime.model.protobuf_fields import read_metadata, replace_metadata
from netorigin.runtime.model.signing import (
    SIGNATURE_KEY,
    generate_keypair,
    key_id,
    load_public_key,
    sign_model,
    verify_signature,
)

from .helpers import run_cli


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("hospital", "stranger"):
        key_id = generate_keypair(root / f"{name}.key", root / f"{name}.pub")
        made[name] = (root / f"{name}.key", root / f"{name}.pub", key_id)
    return made


@pytest.fixture(scope="module")
def signed_model(tiny_model, keys, tmp_path_factory):
    path = tmp_path_factory.mktemp("signed") / "signed.onnx"
    path.write_bytes(sign_model(load_contract(tiny_model), keys["hospital"][0]))
    return path


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(keys, tmp_path):
    private, public, key_id = keys["hospital"]
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert load_public_key(public).key_id == key_id and len(key_id) == 64
    assert keys["stranger"][2] != key_id
    with pytest.raises(ConfigurationError, match="refusing to overwrite"):
        generate_keypair(private, tmp_path / "new.pub")


def test_signature_by_a_trusted_key_is_accepted_and_reported(signed_model, keys):
    contract = load_contract(signed_model)
    status = verify_signature(contract, [load_public_key(keys["stranger"][1]), load_public_key(keys["hospital"][1])])
    assert (status.state, status.key_id) == ("trusted", keys["hospital"][2])
    assert verify_signature(contract).state == "intact"  # verified, but no key said whose it is


def test_unsigned_or_foreign_models_are_refused_when_keys_are_trusted(tiny_model, signed_model, keys):
    hospital = [load_public_key(keys["hospital"][1])]
    with pytest.raises(SignatureError, match="model is unsigned"):
        verify_signature(load_contract(tiny_model), hospital)
    with pytest.raises(SignatureError, match=f"signed by key {keys['hospital'][2]}, which is not a trusted key"):
        verify_signature(load_contract(signed_model), [load_public_key(keys["stranger"][1])])
    assert verify_signature(load_contract(tiny_model)).state == "unsigned"


def _edit_signed(signed_model, tmp_path, edit):
    """Change metadata of a signed model the way an editor would: keep the signature, recompute the digests."""
    contract = load_contract(signed_model)
    meta = edit(json.loads(json.dumps(contract.meta)))
    signature = meta[SIGNATURE_KEY]
    rewritten = with_metadata(contract.model_bytes, meta)  # drops the signature, recomputes both digests
    props = read_metadata(rewritten) | {SIGNATURE_KEY: json.dumps(signature)}
    path = tmp_path / "edited.onnx"
    path.write_bytes(replace_metadata(rewritten, props))
    return path


@pytest.mark.parametrize("what, edit", [
    ("bands", lambda m: m | {PREFIX + "bands": [dict(b, upper=b["upper"] + 1.0) for b in m[PREFIX + "bands"]]}),
    ("record", lambda m: m | {PREFIX + "record": dict(m[PREFIX + "record"], demo=False)}),
    ("provenance", lambda m: m | {PREFIX + "provenance": dict(m[PREFIX + "provenance"], versions={})}),
])
def test_any_metadata_edit_after_signing_is_refused(signed_model, keys, tmp_path, what, edit):
    path = _edit_signed(signed_model, tmp_path, edit)
    contract = load_contract(path)  # digests are consistent: only the signature can tell
    for trusted in ([], [load_public_key(keys["hospital"][1])]):
        with pytest.raises(SignatureError, match="does not match the model: its metadata was changed after signing"):
            verify_signature(contract, trusted)


def test_a_signature_swapped_in_from_another_key_is_refused(signed_model, keys, tmp_path):
    def swap_key(meta):
        stranger = load_public_key(keys["stranger"][1])
        return meta | {SIGNATURE_KEY: dict(meta[SIGNATURE_KEY], public_key=base64.b64encode(stranger.raw).decode(),
                                           key_id=key_id(stranger.raw))}
    path = _edit_signed(signed_model, tmp_path, swap_key)
    with pytest.raises(SignatureError, match="does not match the model"):
        verify_signature(load_contract(path), [load_public_key(keys["stranger"][1])])


def test_resaving_through_netorigin_drops_the_signature(signed_model):
    contract = load_contract(signed_model)
    assert SIGNATURE_KEY in contract.meta
    assert SIGNATURE_KEY not in json.dumps(read_metadata(with_metadata(contract.model_bytes, contract.meta)))


def test_cli_keygen_sign_and_trusted_key_predict(monkeypatch, capsys, tiny_model, slides, tmp_path):
    private, public = tmp_path / "lab.key", tmp_path / "lab.pub"
    monkeypatch.setenv("NETORIGIN_KEY_PASSPHRASE", "s3cret")
    code, out, err = run_cli(monkeypatch, capsys, "keygen", "--private", private, "--public", public, "--encrypt")
    assert code == 0, err
    key_id = out.split()[2].rstrip(":")
    assert b"ENCRYPTED" in private.read_bytes()
    signed = tmp_path / "signed.onnx"
    monkeypatch.delenv("NETORIGIN_KEY_PASSPHRASE")
    code, out, err = run_cli(monkeypatch, capsys, "sign", tiny_model, "--key", private, "--out", signed)
    assert code == 1 and "the private key is encrypted: give its passphrase" in err and not signed.exists()
    monkeypatch.setenv("NETORIGIN_KEY_PASSPHRASE", "s3cret")
    code, out, err = run_cli(monkeypatch, capsys, "sign", tiny_model, "--key", private, "--out", signed)
    assert code == 0, err
    assert f"with key {key_id}" in out
    s = slides["svs20x"]
    args = ("predict", s.slide, "-a", s.annotations, "--device", "cpu", "--json", "--trusted-key", public)
    code, out, err = run_cli(monkeypatch, capsys, *args, "-m", signed)
    assert code == 0, err
    assert json.loads(out)["model"]["signature"] == {"state": "trusted", "key_id": key_id}
    code, out, err = run_cli(monkeypatch, capsys, *args, "-m", tiny_model)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [f"error: {tiny_model}: model is unsigned, but only models signed by a "
                                        f"trusted key are accepted (trusted: {key_id})"]
    monkeypatch.setenv("NETORIGIN_TRUSTED_KEY", str(public))
    code, out, err = run_cli(monkeypatch, capsys, *args[:-2], "-m", tiny_model)
    assert code == 1 and "model is unsigned" in err and out == ""


def test_bad_key_files_are_one_line_errors(tmp_path, keys):
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(ConfigurationError, match="not a PEM public key") as exc:
        load_public_key(tmp_path / "junk.pub")
    assert str(exc.value) == f"{tmp_path / 'junk.pub'}: not a PEM public key"
    with pytest.raises(ConfigurationError, match="public key file not found"):
        load_public_key(tmp_path / "missing.pub")
    with pytest.raises(ConfigurationError, match="not a PEM public key"):
        load_public_key(keys["hospital"][0])  # a private key given where the public one belongs


def test_inspect_names_the_signature_and_checks_trusted_keys(monkeypatch, capsys, tiny_model, signed_model, keys):
    code, out, err = run_cli(monkeypatch, capsys, "inspect", tiny_model)
    assert code == 0 and "signature   none" in out
    code, out, err = run_cli(monkeypatch, capsys, "inspect", signed_model)
    assert code == 0 and f"signature   by key {keys['hospital'][2]}, intact" in out
    code, out, err = run_cli(monkeypatch, capsys, "inspect", signed_model, "--trusted-key", keys["hospital"][1])
    assert code == 0 and f"signature   by key {keys['hospital'][2]}, a trusted key" in out
    code, out, err = run_cli(monkeypatch, capsys, "inspect", signed_model, "--trusted-key", keys["stranger"][1])
    assert code == 1 and "which is not a trusted key" in err and out == ""


def test_a_new_graph_with_a_recomputed_digest_under_the_old_signature_is_refused(signed_model, keys, tmp_path):
    """Swap the weights, recompute netorigin.sha256 as an attacker could, keep the signature: refused."""
    from netorigin.runtime.model.contract import content_sha256, encode_metadata

    contract = load_contract(signed_model)
    tampered = bytearray(contract.model_bytes)
    at = len(tampered) // 2
    tampered[at] = (tampered[at] + 1) % 256
    props = read_metadata(bytes(tampered))
    props |= encode_metadata({PREFIX + "sha256": content_sha256(bytes(tampered))})
    path = tmp_path / "swapped.onnx"
    path.write_bytes(replace_metadata(bytes(tampered), props))
    swapped = load_contract(path)  # both digests consistent: only the signature can tell
    with pytest.raises(SignatureError, match="changed after signing"):
        verify_signature(swapped, [load_public_key(keys["hospital"][1])])


def test_a_duplicate_json_key_in_a_signed_model_is_refused(signed_model, tmp_path):
    """Parsers disagree on which of two equal keys wins, so the stored text must never hold one."""
    props = read_metadata(signed_model.read_bytes())
    props[PREFIX + "bands"] = props[PREFIX + "bands"].replace('{"c": ', '{"c": 12345, "c": ', 1)
    path = tmp_path / "duplicate.onnx"
    path.write_bytes(replace_metadata(signed_model.read_bytes(), props))
    with pytest.raises(ModelError, match="same key twice"):
        load_contract(path)


def test_a_signature_whose_key_id_does_not_match_its_key_is_refused(signed_model, keys, tmp_path):
    other = keys["stranger"][2]
    path = _edit_signed(signed_model, tmp_path, lambda m: m | {SIGNATURE_KEY: dict(m[SIGNATURE_KEY], key_id=other)})
    with pytest.raises(SignatureError, match="key_id does not match its public key"):
        verify_signature(load_contract(path))


def test_digests_are_rechecked_for_a_contract_built_by_hand(signed_model):
    contract = load_contract(signed_model)
    bands = [dict(b, upper=b["upper"] + 1) for b in contract.meta[PREFIX + "bands"]]
    forged = ModelContract(path=contract.path, model_bytes=contract.model_bytes,
                           meta=contract.meta | {PREFIX + "bands": bands})
    with pytest.raises(SignatureError, match="stored digests do not match"):
        verify_signature(forged)


def test_signing_keeps_other_metadata_and_replaces_an_older_signature(signed_model, keys, tmp_path):
    props = read_metadata(signed_model.read_bytes()) | {"scanner.site": "north"}
    path = tmp_path / "extra.onnx"
    path.write_bytes(replace_metadata(signed_model.read_bytes(), props))
    resigned = sign_model(load_contract(path), keys["stranger"][0])
    stored = read_metadata(resigned)
    assert stored["scanner.site"] == "north"
    assert {k: v for k, v in stored.items() if k != SIGNATURE_KEY} == {k: v for k, v in props.items()
                                                                       if k != SIGNATURE_KEY}
    path.write_bytes(resigned)
    status = verify_signature(load_contract(path), [load_public_key(keys["stranger"][1])])
    assert status.key_id == keys["stranger"][2]


def test_a_worker_trusts_the_key_bytes_its_driver_read_not_the_file_now_at_that_path(signed_model, keys, tmp_path):
    """Cluster workers build their Predictor from the driver's settings (pickled): a key file swapped after the
    driver read it must not change whom a worker trusts."""
    import pickle
    import shutil

    from netorigin.runtime.slide.predictor import Predictor

    trusted = tmp_path / "trusted.pub"
    shutil.copy(keys["hospital"][1], trusted)
    driver = Predictor(signed_model, trusted_keys=[trusted], inference=False)
    shutil.copy(keys["stranger"][1], trusted)  # swapped on the shared file system after the driver started
    with pytest.raises(SignatureError, match="which is not a trusted key"):
        Predictor(signed_model, trusted_keys=[trusted], inference=False)  # the path now names the stranger
    worker = pickle.loads(pickle.dumps(driver.settings)).build(inference=False)
    assert (worker.signature.state, worker.signature.key_id) == ("trusted", keys["hospital"][2])
