"""Spool path safety and durability rules; the job state machine on a real SQLite database."""

from __future__ import annotations

import pytest

from dicom_node.exceptions import InvalidIdentifierError, OutOfResources
from dicom_node.spool import Spool
from medseg.app.context import build_context
from medseg.config import ServiceSettings, Settings
from medseg.core.exceptions import IllegalTransition
from medseg.jobs.states import JobState
from medseg.jobs.store import JobStore, _move


@pytest.mark.parametrize("bad", ["../etc", "1.2/../../x", "1.2\x00.3", "", " ", "1..2", ".1.2", "1.2.", "1" * 65,
                                 "/abs/path", "1.2.3\\..\\x"])
def test_spool_refuses_unsafe_identifiers(tmp_path, bad):
    spool = Spool(tmp_path / "spool")
    with pytest.raises(InvalidIdentifierError):
        spool.path_for("1.2.3", bad, "1.2.3.4")
    with pytest.raises(InvalidIdentifierError):
        spool.path_for(bad, "1.2.3")


def test_spool_store_is_durable_and_idempotent(tmp_path):
    spool = Spool(tmp_path / "spool")
    first = spool.store("1.2", "1.2.3", "1.2.3.4", lambda f: f.write(b"first"))
    again = spool.store("1.2", "1.2.3", "1.2.3.4", lambda f: f.write(b"second"))
    assert first.new and not again.new
    assert first.path.read_bytes() == b"first", "the acknowledged copy is kept"
    assert first.path.is_relative_to(spool.root)
    assert not list(spool.root.rglob("*.part"))


def test_a_full_disk_is_out_of_resources_and_other_write_failures_cannot_write(tmp_path):
    """ENOSPC while writing is 0xA700 (out of resources: the PACS retries later), as the disk floor
    is (issue 17: it was 0xC004); the kernel's own ENOSPC, from /dev/full, as a filling disk gives it
    (a real full file system needs a mount this test may not make). Other I/O errors stay 0xC004."""
    spool = Spool(tmp_path / "spool")

    def full(f):
        f.write(b"half")
        with open("/dev/full", "wb", buffering=0) as device:
            device.write(b"x")

    with pytest.raises(OutOfResources) as info:
        spool.store("1.2", "1.2.3", "1.2.3.5", full)
    assert info.value.status == 0xA700 and "full" in str(info.value)

    def io_error(f):
        raise OSError(5, "Input/output error")
    with pytest.raises(Exception) as info:
        spool.store("1.2", "1.2.3", "1.2.3.6", io_error)
    assert getattr(info.value, "status", None) == 0xC004
    assert not list(spool.root.rglob("*.dcm*")) and not list(spool.root.rglob(".*"))


def test_spool_disk_floor(tmp_path):
    with pytest.raises(OutOfResources):
        Spool(tmp_path / "spool", disk_floor_mb=10**9).check_space()


@pytest.fixture
def store(tmp_path) -> JobStore:
    return build_context(Settings(service=ServiceSettings(data_dir=tmp_path))).prepare().jobs


def test_job_lifecycle_and_supersede(store):
    store.series_seen("1.2", "1.2.3", "PACS")
    job = store.complete_series("1.2", "1.2.3", "m/1", 10)
    assert job.state == JobState.QUEUED and store.queue_depth() == 1
    claimed = store.claim_next()
    assert claimed.id == job.id and claimed.state == JobState.RUNNING and store.claim_next() is None
    # a late instance reopens the series while the job runs: the running job is superseded
    assert store.series_seen("1.2", "1.2.3", "PACS").reopened
    newer = store.complete_series("1.2", "1.2.3", "m/1", 11)
    finished = store.finish(job.id, seg_path="x", seg_series_uid="1", seg_sop_uid="2", result={}, destinations=["a"])
    assert finished.state == JobState.SUPERSEDED and newer.revision == 2
    assert store.due_deliveries() == [], "a superseded job sends nothing"


def test_delivery_retries_then_failure(store):
    store.series_seen("1.2", "1.2.4", "PACS")
    job = store.complete_series("1.2", "1.2.4", "m/1", 5)
    store.claim_next()
    store.finish(job.id, seg_path="x", seg_series_uid="1", seg_sop_uid="2", result={}, destinations=["a", "b"])
    (a, _), (b, _) = store.due_deliveries()
    store.delivery_result(a.id, ok=True, status="0x0000")
    _, after_retry = store.delivery_result(b.id, ok=False, status="no connection", retry_at=a.next_attempt_at)
    assert after_retry.state == "delivering"
    _, final = store.delivery_result(b.id, ok=False, status="no connection", error="down")
    assert final.state == JobState.FAILED and "down" in final.error


def test_recover_requeues_running_jobs_and_rejects_illegal_moves(store):
    store.series_seen("1.2", "1.2.5", "PACS")
    job = store.complete_series("1.2", "1.2.5", "m/1", 5)
    store.claim_next()
    assert store.recover() == 1 and store.claim_next().attempts == 2
    job.state = JobState.SENT
    with pytest.raises(IllegalTransition):
        _move(job, JobState.RUNNING)
