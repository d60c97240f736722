"""DICOM TLS and connection policy: a peer that never finishes its handshake must not block anyone."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.node_helpers import events, wait_for
from tests.test_dicom_node import running

pytestmark = pytest.mark.model  # the service loads the shipped model at start


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=medseg test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


def _echo(port: int, pki: Path, with_client_cert: bool = True) -> bool:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    if with_client_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    ae = AE(ae_title="TESTPACS")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG", tls_args=(context, "127.0.0.1"))
    if not assoc.is_established:
        return False
    ok = assoc.send_c_echo().Status == 0
    assoc.release()
    return ok


def test_stalled_handshake_does_not_block_and_failures_are_audited(tmp_path, pki):
    tls = {"cert": pki / "server.pem", "key": pki / "server.key", "ca": pki / "ca.pem", "handshake_timeout_s": 3.0}
    with running(tmp_path, tls=tls) as (service, _):
        stalled = socket.create_connection(("127.0.0.1", service.dicom_port))  # TCP open, no ClientHello, ever
        try:
            started = time.monotonic()
            assert _echo(service.dicom_port, pki)
            assert time.monotonic() - started < 3.0, "the TLS association waited for the stalled peer"
            assert not _echo(service.dicom_port, pki, with_client_cert=False)
            failures = wait_for(lambda: (lambda e: e if len(e) >= 2 else None)(
                events(service.data_dir, "dicom.tls.handshake_failed")), 15, what="two handshake failures")
            assert {f["reason"] for f in failures} >= {"handshake timed out"}
        finally:
            stalled.close()


def test_peer_address_policy(tmp_path):
    with running(tmp_path, allowed_addresses=("10.9.9.9",)) as (service, _):
        result = subprocess.run(["echoscu", "-aet", "TESTPACS", "-aec", "MEDSEG", "127.0.0.1", str(service.dicom_port)],
                                capture_output=True)
        assert result.returncode != 0
        refused = wait_for(lambda: events(service.data_dir, "dicom.connection.refused"), 10)
        assert refused[0]["peer"] == "127.0.0.1"


def test_idle_tcp_clients_do_not_block_associations(tmp_path):
    with running(tmp_path, max_associations=2, acse_timeout_s=2.0) as (service, _):
        idle = [socket.create_connection(("127.0.0.1", service.dicom_port)) for _ in range(3)]
        try:
            started = time.monotonic()
            result = subprocess.run(["echoscu", "-aet", "TESTPACS", "-aec", "MEDSEG", "127.0.0.1",
                                     str(service.dicom_port)], capture_output=True)
            assert result.returncode == 0 and time.monotonic() - started < 5
        finally:
            for s in idle:
                s.close()
        held = []
        for _ in range(2):  # two real associations do take the two slots
            ae = AE(ae_title="TESTPACS")
            ae.add_requested_context(Verification)
            held.append(ae.associate("127.0.0.1", service.dicom_port, ae_title="MEDSEG"))
        assert all(a.is_established for a in held)
        third = subprocess.run(["echoscu", "-aet", "TESTPACS", "-aec", "MEDSEG", "127.0.0.1", str(service.dicom_port)],
                               capture_output=True, text=True)
        assert third.returncode != 0 and "Local Limit Exceeded" in third.stdout + third.stderr
        for a in held:
            a.release()
