"""kill -9 of `medseg serve` while a study arrives and while a job runs: nothing acknowledged is lost,
the study completes after restart, and exactly one SEG is delivered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.conftest import small_phantom, write_study
from tests.node_helpers import events, free_port, node_toml, storescp, storescu, wait_for

pytestmark = pytest.mark.model


class Server:
    def __init__(self, tmp_path: Path, dest_port: int, node_extra: str = "") -> None:
        self.dicom_port, self.http_port = free_port(), free_port()
        self.data = tmp_path / "data"
        self.config = tmp_path / "medseg.toml"
        self.config.write_text(f"""
[service]
data_dir = "{self.data}"
http_port = {self.http_port}
poll_interval_s = 0.1
[auth]
enabled = false  # loopback only; this test is about durability (authentication: tests/test_auth.py)
""" + node_toml(self.dicom_port, dest_port, node_extra))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ready, 120, what="medseg serve to be ready")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.http_port}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def jobs(self, study_uid: str) -> list[dict]:
        r = httpx.get(f"http://127.0.0.1:{self.http_port}/studies/{study_uid}", timeout=5)
        return r.json()["jobs"] if r.status_code == 200 else []


@pytest.fixture
def server(tmp_path):
    with storescp(tmp_path / "pacs") as dest_port:
        s = Server(tmp_path, dest_port)
        s.start()
        yield s
        if s.proc.poll() is None:
            s.kill()


def kill_mid_arrival(server: Server, files: list[Path]) -> list[str]:
    """Push the files on one association and kill -9 the server after 15 are acknowledged."""
    acknowledged: list[str] = []

    def push() -> None:
        ae = AE(ae_title="TESTPACS")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="MEDSEG")
        for f in files:
            ds = pydicom.dcmread(f)
            status = assoc.send_c_store(ds) if assoc.is_established else None
            if not status or status.Status != 0:
                return
            acknowledged.append(ds.SOPInstanceUID)
        assoc.release()

    pusher = threading.Thread(target=push)
    pusher.start()
    wait_for(lambda: len(acknowledged) >= 15, 60, 0.01, what="part of the study to arrive")
    server.kill()
    pusher.join()
    assert 15 <= len(acknowledged) < len(files)
    return acknowledged


def test_kill_during_arrival_then_during_the_job(tmp_path, server):
    study = tmp_path / "study"
    datasets = write_study(study, small_phantom(seed=21, shape=(40, 64, 64), n_tumors=1))
    study_uid = str(datasets[0].StudyInstanceUID)
    files = sorted(study.glob("*.dcm"))
    acknowledged = kill_mid_arrival(server, files)
    spool = server.data / "spool" / study_uid
    on_disk = {p.stem for p in spool.rglob("*.dcm")}
    assert set(acknowledged) <= on_disk, "an acknowledged instance was lost"
    for p in spool.rglob("*.dcm"):
        pydicom.dcmread(p)  # whole files only under final names

    server.start()  # the PACS retries the whole study, as PACS queues do
    assert storescu(server.dicom_port, files).returncode == 0
    wait_for(lambda: events(server.data, "job.started"), 60, 0.02, what="the job to start")
    server.kill()  # while the job runs

    server.start()
    sent = wait_for(lambda: [j for j in server.jobs(study_uid) if j["state"] == "sent"], 120, what="the SEG to be sent")
    assert len(sent) == 1 and sent[0]["instances"] == len(files)
    assert len(server.jobs(study_uid)) == 1
    assert len(list((tmp_path / "pacs").glob("SG*"))) == 1, "exactly one SEG delivered"
    assert [e["attempt"] for e in events(server.data, "job.started")] == [1, 2], "the killed job was resumed"
    assert any(e.get("jobs_requeued") == 1 for e in events(server.data, "service.recovered"))


def test_a_series_cut_off_by_a_crash_and_never_resent_fails_visibly_with_no_seg(tmp_path):
    """Issue 17: the node killed mid-series and the sender never resends: after the restart the
    instances on disk outnumber those of released associations, so the series is held
    (study.series_incomplete), then fails visibly (study.incomplete); no partial SEG goes out."""
    study = tmp_path / "study"
    datasets = write_study(study, small_phantom(seed=22, shape=(40, 64, 64), n_tumors=1))
    files = sorted(study.glob("*.dcm"))
    with storescp(tmp_path / "pacs") as dest_port:
        server = Server(tmp_path, dest_port, node_extra="incomplete_hold_s = 3")
        server.start()
        try:
            acknowledged = kill_mid_arrival(server, files)
            server.start()  # no resend
            failed = wait_for(lambda: [j for j in server.jobs(str(datasets[0].StudyInstanceUID))
                                       if j["state"] == "failed"], 60, what="the job to fail visibly")
        finally:
            if server.proc.poll() is None:
                server.kill()
    held = events(server.data, "study.series_incomplete")
    assert len(held) == 1 and held[0]["aborted"] is True and held[0]["received"] >= len(acknowledged)
    assert failed[0]["error_code"] == "study.incomplete" and "aborted" in failed[0]["error"]
    assert not events(server.data, "seg.sent") and not list((tmp_path / "pacs").iterdir())
