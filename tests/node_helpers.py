"""Helpers for the DICOM node tests: free ports, real peers (dcmtk storescp, Orthanc), waiting."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

TCP_NODELAY = {**os.environ, "TCP_NODELAY": "1"}  # Debian's dcmtk leaves Nagle on otherwise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_toml(dicom_port: int, dest_port: int, extra: str = "") -> str:
    """The ``[node]`` section of a test service: DICOM on ``dicom_port``, TESTPACS allowed in, a 1 s
    quiet period, no disk floor, and one destination ``pacs`` (a storescp on ``dest_port``)."""
    return f"""
[node]
port = {dicom_port}
allowed_calling_aets = ["TESTPACS"]
quiet_period_s = 1
disk_floor_mb = 0
{extra}
[[node.destinations]]
name = "pacs"
ae_title = "TESTPACS"
host = "127.0.0.1"
port = {dest_port}
"""


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_port(port: int, timeout: float = 30.0) -> None:
    def open_() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(open_, timeout, what=f"port {port}")


def storescu(port: int, files, calling_ae: str = "TESTPACS", called_ae: str = "MEDSEG", extra=()) -> subprocess.CompletedProcess:
    args = ["storescu", "-aet", calling_ae, "-aec", called_ae, *extra, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(args, capture_output=True, text=True, env=TCP_NODELAY, timeout=300)


@contextmanager
def storescp(folder: Path, ae_title: str = "TESTPACS"):
    """dcmtk storescp as a destination PACS on a free port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(["storescp", "-aet", ae_title, "-od", str(folder), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=TCP_NODELAY)
    try:
        wait_port(port)
        yield port
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def orthanc(folder: Path, modalities: dict):
    """Orthanc (Debian package) on loopback with a temporary config; yields (http_url, dicom_port, ae_title)."""
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "medseg-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomModalities": modalities, "DicomCheckCalledAet": False,
        "Plugins": [], "HttpServerEnabled": True, "DicomServerEnabled": True, "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "w")  # noqa: SIM115 - Orthanc writes to it until the fixture ends (closed below)
    proc = subprocess.Popen([shutil.which("Orthanc") or "Orthanc", str(folder / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: http_ok(url + "/system"), 60, what="Orthanc to start")
        yield url, dicom_port, "ORTHANC"
    finally:
        proc.kill()
        proc.wait()
        log.close()


def http_ok(url: str) -> bool:
    """Whether a GET of ``url`` answers 200 (False while the server is not up yet)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def events(data_dir: Path, action: str | None = None) -> list[dict]:
    """Audit events of a service's data dir (its SQLite database), flattened: details + columns."""
    from audit import AuditLog
    from audit.db import make_engine
    from audit.query import AuditFilter, query

    db = Path(data_dir) / "medseg.db"
    if not db.exists():
        return []
    engine = make_engine(f"sqlite:///{db}")
    try:
        rows = query(AuditLog(engine), AuditFilter(action=action, limit=100_000))
    except Exception:  # noqa: BLE001 - the tables may not exist yet while the service starts
        return []
    finally:
        engine.dispose()
    return [{**e.event.details, **e.event.model_dump(exclude={"details"}), "seq": e.seq, "time": e.ts} for e in rows]


def authorize(service, client, name: str = "test-suite", roles=None) -> str:
    """An API token (every role unless ``roles``) on the client's requests; returns the secret."""
    from medseg.app.auth.roles import Role
    from medseg.app.auth.tokens import TokenError

    try:
        secret, _ = service.tokens.create(name, list(roles or Role), actor="test")
    except TokenError:  # a service started again on the same data dir (restart and restore tests)
        secret, _ = service.tokens.create(f"{name}-{secrets.token_hex(4)}", list(roles or Role), actor="test")
    client.headers["Authorization"] = f"Bearer {secret}"
    return secret


def settled(client, response, timeout=30):
    """POST /reviews answers 202 at once with the review's Location; the service's scoring loop
    scores (or rejects) it moments later."""
    assert response.status_code == 202, response.text
    assert response.json()["review"]["status"] == "received"
    location = response.headers["Location"]

    def done():
        body = client.get(location).json()
        return body if body["review"]["status"] in ("scored", "rejected") else None
    return wait_for(done, timeout, what="review scored")


PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@contextmanager
def postgres_database():
    """A new, empty database on the machine's real PostgreSQL (127.0.0.1:5432, trust auth); its URL.
    Dropped afterwards (with any connection still open)."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"medseg_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


@contextmanager
def rabbitmq_vhost():
    """A new virtual host on the machine's real RabbitMQ (127.0.0.1:5672, guest), so that no message
    of another test or run can reach this one; its AMQP URL. Deleted afterwards."""
    vhost = f"medseg-test-{secrets.token_hex(6)}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True, timeout=60)
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
