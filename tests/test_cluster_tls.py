"""A cluster that lets no one in: mutual TLS with certificates `netorigin cluster-certs` made, on a real Dask
LocalCluster on 127.0.0.1; a plaintext scheduler off the host refused before any connection is opened."""

from __future__ import annotations

import json
import socket
import stat

import distributed
import pytest
from distributed import LocalCluster
from distributed.security import Security

from netorigin.runtime.batch.cluster_access import ClusterAccess
from netorigin.runtime.batch.cluster_certs import certificate_files
from netorigin.runtime.errors import ConfigurationError

from .helpers import run_cli
from .test_cluster import manifest, reports


def make_certs(monkeypatch, capsys, folder):
    code, _, err = run_cli(monkeypatch, capsys, "cluster-certs", folder)
    assert code == 0, err
    return certificate_files(folder)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Two independent CAs, each with scheduler, worker and client certificates."""
    from netorigin.runtime.batch.cluster_certs import make_cluster_certificates

    root = tmp_path_factory.mktemp("certs")
    return make_cluster_certificates(root / "ours"), make_cluster_certificates(root / "theirs")


@pytest.fixture(scope="module")
def tls_cluster(certs):
    ours, _ = certs
    security = Security(tls_ca_file=str(ours["ca"][0]), require_encryption=True,
                        tls_scheduler_cert=str(ours["scheduler"][0]), tls_scheduler_key=str(ours["scheduler"][1]),
                        tls_worker_cert=str(ours["worker"][0]), tls_worker_key=str(ours["worker"][1]),
                        tls_client_cert=str(ours["client"][0]), tls_client_key=str(ours["client"][1]))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tls://", host="127.0.0.1",
                      security=security, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def tls_args(files, ca_from=None):
    ca = (ca_from or files)["ca"][0]
    return ["--tls-ca", ca, "--tls-cert", files["client"][0], "--tls-key", files["client"][1]]


def test_cluster_certs_are_a_chain_with_private_keys_0600_never_overwritten(tmp_path, monkeypatch, capsys):
    from cryptography import x509

    files = make_certs(monkeypatch, capsys, tmp_path / "certs")
    ca = x509.load_pem_x509_certificate(files["ca"][0].read_bytes())
    for role in ("scheduler", "worker", "client"):
        cert = x509.load_pem_x509_certificate(files[role][0].read_bytes())
        cert.verify_directly_issued_by(ca)
    for _, key in files.values():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = {path: path.read_bytes() for pair in files.values() for path in pair}
    code, out, err = run_cli(monkeypatch, capsys, "cluster-certs", tmp_path / "certs")
    assert code != 0 and "never replaced" in err and len(err.strip().splitlines()) == 1
    assert {path: path.read_bytes() for path in before} == before
    code, _, err = run_cli(monkeypatch, capsys, "cluster-certs", tmp_path / "other", "--host", "ü.lan")
    assert code != 0 and "xn--" in err and not (tmp_path / "other").exists()


def test_batch_over_mutual_tls_equals_a_local_run(tls_cluster, certs, tiny_model, slides, tmp_path, monkeypatch,
                                                  capsys):
    path = manifest(tmp_path, slides, 3)
    common = ["batch", path, "-m", tiny_model, "--device", "cpu"]
    code, _, err = run_cli(monkeypatch, capsys, *common, "-o", tmp_path / "local")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, *common, "-o", tmp_path / "tls", "--scheduler", tls_cluster,
                             *tls_args(certs[0]))
    assert code == 0, err
    assert reports(tmp_path / "tls", "tls") == reports(tmp_path / "local", "local") != {}
    summary = json.loads((tmp_path / "tls" / "batch-summary.json").read_text())
    assert summary["cluster"] == {"scheduler": tls_cluster, "scheme": "tls", "insecure_cluster": False}


@pytest.mark.parametrize(("client_from", "ca_from", "says"), [
    ("theirs", "ours", "refused this client's certificate"),  # the scheduler checks us
    ("theirs", "theirs", "presents a certificate that the given CA did not sign"),  # we check the scheduler
])
def test_a_certificate_of_another_ca_fails_in_one_line_before_anything_is_written(
        tls_cluster, certs, tiny_model, slides, tmp_path, monkeypatch, capsys, client_from, ca_from, says):
    named = dict(zip(("ours", "theirs"), certs, strict=True))
    code, out, err = run_cli(monkeypatch, capsys, "batch", manifest(tmp_path, slides, 1), "-m", tiny_model,
                             "--device", "cpu", "-o", tmp_path / "out", "--scheduler", tls_cluster,
                             *tls_args(named[client_from], named[ca_from]))
    assert code != 0 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and out == ""


def test_a_plaintext_scheduler_off_the_host_is_refused_before_any_client_is_created(
        tiny_model, slides, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: pytest.fail("a client was created"))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("a connection was opened"))
    code, out, err = run_cli(monkeypatch, capsys, "batch", manifest(tmp_path, slides, 1), "-m", tiny_model,
                             "--device", "cpu", "-o", tmp_path / "out", "--scheduler", "tcp://10.20.30.40:8786")
    assert code != 0 and "refusing the plaintext scheduler address tcp://10.20.30.40:8786" in err
    assert "--insecure-cluster" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("address", "insecure", "scheme"), [
    (None, False, "local"), ("tls://10.0.0.5:8786", False, "tls"), ("tcp://127.0.0.1:8786", False, "tcp-loopback"),
    ("tcp://[::1]:8786", False, "tcp-loopback"), ("localhost:8786", False, "tcp-loopback"),
    ("tcp://10.0.0.5:8786", True, "tcp-insecure"), ("tcp://scheduler.hospital.lan:8786", True, "tcp-insecure"),
])
def test_the_scheme_reports_record(address, insecure, scheme):
    assert ClusterAccess(address, insecure=insecure).scheme == scheme


def test_a_host_name_is_never_taken_for_loopback_without_resolving_it(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("a name was resolved"))
    with pytest.raises(ConfigurationError, match="refusing the plaintext"):
        ClusterAccess("tcp://scheduler.hospital.lan:8786").check()


def test_insecure_cluster_off_loopback_runs_and_the_summary_says_so(tiny_model, slides, tmp_path, monkeypatch,
                                                                   capsys):
    """The address is off the host; the client is pointed at a loopback cluster, so no scheduler listens on the
    network during the test."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        real_client, asked = distributed.Client, []

        def client(address, **kwargs):
            asked.append(address)
            return real_client(cluster.scheduler_address, **kwargs)

        monkeypatch.setattr(distributed, "Client", client)
        code, _, err = run_cli(monkeypatch, capsys, "batch", manifest(tmp_path, slides, 1), "-m", tiny_model,
                               "--device", "cpu", "-o", tmp_path / "out", "--scheduler", "tcp://10.255.255.1:8786",
                               "--insecure-cluster")
    assert code == 0, err
    assert asked == ["tcp://10.255.255.1:8786"]
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert summary["cluster"] == {"scheduler": "tcp://10.255.255.1:8786", "scheme": "tcp-insecure",
                                  "insecure_cluster": True}
    assert json.loads((tmp_path / "out" / "case0.json").read_text())["cluster"] == "tcp-insecure"


def test_tls_without_a_client_certificate_writes_nothing(tls_cluster, certs, tiny_model, slides, tmp_path,
                                                         monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "batch", manifest(tmp_path, slides, 1), "-m", tiny_model,
                           "--device", "cpu", "-o", tmp_path / "out", "--scheduler", tls_cluster,
                           "--tls-ca", certs[0]["ca"][0])
    assert code != 0 and "needs --tls-cert, --tls-key" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_tls_files_from_dasks_configuration_are_used(tls_cluster, certs):
    import dask

    from netorigin.runtime.batch.cluster import mapper_for

    ours = certs[0]
    with dask.config.set({"distributed.comm.tls.ca-file": str(ours["ca"][0]),
                          "distributed.comm.tls.client.cert": str(ours["client"][0]),
                          "distributed.comm.tls.client.key": str(ours["client"][1])}):
        with mapper_for(ClusterAccess(tls_cluster)) as mapper:
            assert mapper(abs, [-1, -2]) == [1, 2] and mapper.access.scheme == "tls"


def test_a_key_that_is_not_the_certificates_is_one_line(tls_cluster, certs):
    from netorigin.runtime.batch.cluster import mapper_for

    ours, theirs = certs
    access = ClusterAccess(tls_cluster, ours["ca"][0], ours["client"][0], theirs["client"][1])
    with pytest.raises(ConfigurationError, match="TLS files for .* cannot be used") as refused:
        mapper_for(access)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("address", "insecure", "says"), [
    ("tcp://[::1", False, "not a scheduler address"), ("tls://host:99999", False, "not a scheduler address"),
    ("tls://scheduler", False, "needs a host and a port"), ("ws://127.0.0.1:8786", False, "is not offered"),
    ("tls://scheduler:8786", True, "--insecure-cluster is for plaintext"),
])
def test_addresses_that_cannot_be_used_are_refused_before_any_connection(address, insecure, says, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("a connection was opened"))
    with pytest.raises(ConfigurationError, match=says):
        ClusterAccess(address, insecure=insecure).check()
