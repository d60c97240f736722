"""The DICOM node against real peers over loopback: dcmtk echoscu/storescu/storescp, pynetdicom SCUs.

Each test runs the whole service in-process (SCP, assembly, worker with the shipped model,
delivery, HTTP API through FastAPI's TestClient lifespan) on free ports with its own data dir.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from audit.verify import verify
from medseg.app.api.main import create_app
from medseg.app.serve import Service
from medseg.config import DestinationSettings, NodeSettings, ServiceSettings, Settings
from medseg.core.seg import read_seg_mask
from tests.conftest import PHI_ID, PHI_NAME, small_phantom, write_study
from tests.node_helpers import TCP_NODELAY, authorize, events, free_port, storescp, storescu, wait_for

pytestmark = pytest.mark.model


@contextmanager
def running(tmp_path: Path, dest_port: int | None = None, models_root: Path | None = None,
            settings_extra: dict | None = None, **node):
    destinations = [DestinationSettings(name="pacs", ae_title="TESTPACS", host="127.0.0.1", port=dest_port)] if dest_port else []
    node = {"port": free_port(), "allowed_calling_aets": ("TESTPACS", "PACS2", "PACS3", "PACS4"),
            "quiet_period_s": 1.0, "continuity_grace_s": 1.0, "disk_floor_mb": 0, "destinations": destinations,
            "send_backoff_s": 0.2, **node}
    extra = {"models_root": models_root} if models_root else {}
    extra.update(settings_extra or {})
    settings = Settings(node=NodeSettings(**node), service=ServiceSettings(data_dir=tmp_path / "data", poll_interval_s=0.1),
                        **extra)
    service = Service(settings)
    with TestClient(create_app(service)) as client:
        authorize(service, client)
        yield service, client


def jobs_in(service: Service, state: str, n: int = 1, timeout: float = 120):
    return wait_for(lambda: (lambda js: js if len(js) >= n else None)([j for j in service.jobs.jobs() if j.state == state]),
                    timeout, what=f"{n} job(s) {state}")


def test_echo_and_calling_ae_policy(tmp_path):
    with running(tmp_path) as (service, _):
        port = service.dicom_port
        ok = subprocess.run(["echoscu", "-aet", "TESTPACS", "-aec", "MEDSEG", "127.0.0.1", str(port)],
                            capture_output=True, env=TCP_NODELAY)
        bad = subprocess.run(["echoscu", "-aet", "INTRUDER", "-aec", "MEDSEG", "127.0.0.1", str(port)],
                             capture_output=True, text=True, env=TCP_NODELAY)
        assert ok.returncode == 0
        assert bad.returncode != 0 and "Rejected" in bad.stderr
        rejected = wait_for(lambda: events(service.data_dir, "dicom.association.rejected"), 10, what="rejection event")
        assert rejected[0]["actor"] == "INTRUDER" and rejected[0]["outcome"] == "failure"
        assert rejected[0]["reason"] == "calling AE title not allowed"
        accepted = events(service.data_dir, "dicom.association.accepted")
        assert accepted[0]["called_ae"] == "MEDSEG"


def test_an_association_addressed_to_another_ae_title_is_refused_and_named(tmp_path):
    """storescu -aec NOTMEDSEG must not land in the spool (issue 17): A-ASSOCIATE-RJ, called AE not
    recognized, and the audit names the AE title the peer asked for."""
    with running(tmp_path) as (service, _):
        wrong = subprocess.run(["echoscu", "-aet", "TESTPACS", "-aec", "NOTMEDSEG", "127.0.0.1", str(service.dicom_port)],
                               capture_output=True, text=True, env=TCP_NODELAY)
        assert wrong.returncode != 0 and "Called AE Title Not Recognized" in wrong.stderr, wrong.stderr
        rejected = wait_for(lambda: events(service.data_dir, "dicom.association.rejected"), 10, what="rejection event")
        assert rejected[0]["called_ae"] == "NOTMEDSEG" and "'NOTMEDSEG' is not this node's ('MEDSEG')" in rejected[0]["reason"]
        assert not events(service.data_dir, "dicom.association.accepted")


def test_study_in_seg_out_matches_the_core(tmp_path, study_dir, shipped_model, caplog):
    caplog.set_level(logging.DEBUG)
    with storescp(tmp_path / "pacs") as dest_port, running(tmp_path, dest_port) as (service, client):
        files = sorted(study_dir.glob("*.dcm"))
        result = storescu(service.dicom_port, files)
        assert result.returncode == 0, result.stderr
        job = jobs_in(service, "sent")[0]
        received = wait_for(lambda: list((tmp_path / "pacs").glob("SG*")), 10, what="SEG at the destination")
        seg = pydicom.dcmread(received[0])
        assert seg.SOPInstanceUID == job.seg_sop_uid
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == job.series_uid
        assert seg.StudyInstanceUID == job.study_uid

        # the core on the same input, outside the service
        from medseg.jobs.runner import segment_study
        core = segment_study(study_dir, tmp_path / "core", service.settings)
        sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        sources.sort(key=lambda d: float(d.ImagePositionPatient[2]))
        uids = [d.SOPInstanceUID for d in sources]
        np.testing.assert_array_equal(read_seg_mask(received[0], uids), read_seg_mask(tmp_path / "core" / "seg.dcm", uids))
        assert core.lesion_count == job.result["lesion_count"]

        study = client.get(f"/studies/{job.study_uid}").json()
        assert study["jobs"][0]["state"] == "sent" and study["jobs"][0]["deliveries"][0]["state"] == "sent"
        assert client.get("/ready").json()["ready"] is True
        metrics = client.get("/metrics").text
        assert f'medseg_instances_received_total{{sop_class="{CTImageStorage}"}} {float(len(files))}' in metrics
        timeline = [e["action"] for e in events(service.data_dir) if e.get("study_uid") == job.study_uid]
        assert timeline == ["dicom.instances.received", "study.series_complete", "study.series_selected", "job.queued",
                            "job.started", "seg.created", "job.finished", "seg.sent"]
        stored = json.dumps(events(service.data_dir))
        assert PHI_NAME not in stored and PHI_ID not in stored
        assert {e["patient"] for e in events(service.data_dir, "job.queued")} == {service.events.pseudonymize(PHI_ID)}
    assert caplog.records and PHI_NAME not in caplog.text and PHI_ID not in caplog.text


def _send(port: int, paths, calling_ae: str = "TESTPACS") -> list[int]:
    """C-STORE files byte for byte (pynetdicom's chunked mode takes the SOP class from the file
    meta and sends the dataset as it is on disk, as a misbehaving modality would)."""
    from pynetdicom import _config
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(p).Status) for p in paths]
    finally:
        assoc.release()
        _config.STORE_SEND_CHUNKED_DATASET = False


def _variant(src: Path, out: Path, change) -> Path:
    ds = pydicom.dcmread(src)
    change(ds)
    pydicom.dcmwrite(out, ds, enforce_file_format=False)
    return out


def test_bad_instances_get_specific_failure_statuses(tmp_path, study_dir):
    src = sorted(study_dir.glob("*.dcm"))[0]
    blank_study = _variant(src, tmp_path / "blank_study.dcm", lambda d: setattr(d, "StudyInstanceUID", ""))
    blank_class = _variant(src, tmp_path / "blank_class.dcm", lambda d: setattr(d, "SOPClassUID", ""))
    short = _variant(src, tmp_path / "short.dcm", lambda d: setattr(d, "PixelData", d.PixelData[:1000]))
    traversal = _variant(src, tmp_path / "traversal.dcm", lambda d: setattr(d, "SeriesInstanceUID", "1.2/../../etc"))
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with running(tmp_path) as (service, _):
        statuses = _send(service.dicom_port, [blank_study, blank_class, short, traversal, truncated])
        assert statuses[0] == 0xC001 and statuses[1] == 0xC001 and statuses[2] == 0xC003 and statuses[3] == 0xC001
        assert 0xC000 <= statuses[4] <= 0xCFFF
        assert not list(service.spool.root.rglob("*.dcm")), "nothing refused may reach the spool"
        rejected = events(service.data_dir, "dicom.instance.rejected")
        assert [r["status"] for r in rejected[:4]] == ["0xC001", "0xC001", "0xC003", "0xC001"]
        assert "StudyInstanceUID" in rejected[0]["reason"] and "SOPClassUID" in rejected[1]["reason"]


def test_unsupported_sop_class_is_refused_at_negotiation(tmp_path, study_dir):
    sc = _variant(sorted(study_dir.glob("*.dcm"))[0], tmp_path / "sc.dcm",
                  lambda d: (setattr(d, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.7"),
                             setattr(d.file_meta, "MediaStorageSOPClassUID", "1.2.840.10008.5.1.4.1.1.7")))
    with running(tmp_path) as (service, _):
        result = storescu(service.dicom_port, [sc])
        assert result.returncode != 0 and "presentation context" in (result.stderr + result.stdout).lower()
        assert not list(service.spool.root.rglob("*.dcm"))


def test_split_study_makes_one_job_and_a_resend_is_idempotent(tmp_path, study_dir):
    files = sorted(study_dir.glob("*.dcm"))
    with running(tmp_path, quiet_period_s=3.0) as (service, client):
        assert storescu(service.dicom_port, files[:10]).returncode == 0
        assert storescu(service.dicom_port, files[10:], calling_ae="TESTPACS").returncode == 0
        job = jobs_in(service, "sent")[0]  # no destination configured: sent = SEG kept in results
        assert job.instances == len(files)
        assert storescu(service.dicom_port, files).returncode == 0  # the same study again
        wait_for(lambda: events(service.data_dir, "dicom.instances.received")[-1]["duplicates"] == len(files), 10)
        import time
        time.sleep(4)  # longer than the quiet period: a new job would have been queued by now
        assert len(service.jobs.jobs()) == 1
        assert 'medseg_instances_duplicate_total 24.0' in client.get("/metrics").text


def test_late_slice_supersedes_with_a_new_seg_series(tmp_path, study_dir):
    files = sorted(study_dir.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    with storescp(tmp_path / "pacs") as dest_port, running(tmp_path, dest_port) as (service, client):
        assert storescu(service.dicom_port, files[:-1]).returncode == 0
        first = jobs_in(service, "sent")[0]
        assert storescu(service.dicom_port, files[-1:]).returncode == 0
        second = wait_for(lambda: [j for j in service.jobs.jobs() if j.revision == 2 and j.state == "sent"], 120)[0]
        old = next(j for j in service.jobs.jobs() if j.id == first.id)
        assert old.state == "superseded" and second.instances == len(files)
        assert second.seg_series_uid != first.seg_series_uid
        assert len(list((tmp_path / "pacs").glob("SG*"))) == 2  # both SEGs, as separate series
        assert events(service.data_dir, "study.series_reopened")
        # the new SEG, as the PACS received it, names the SEG series it replaces (issue 17)
        received = [pydicom.dcmread(f) for f in (tmp_path / "pacs").glob("SG*")]
        new = next(d for d in received if d.SeriesInstanceUID == second.seg_series_uid)
        assert [(r.StudyInstanceUID, r.SeriesInstanceUID) for r in new.RelatedSeriesSequence] == \
            [(first.study_uid, first.seg_series_uid)]
        assert new.ContentDescription.endswith("; replaces rev 1")
        from tests.test_seg import _dciodvfy_errors

        assert _dciodvfy_errors(Path(second.seg_path)) == []  # still a valid SEG for dicom3tools
        assert "RelatedSeriesSequence" not in next(d for d in received if d.SeriesInstanceUID == first.seg_series_uid)
        result = json.loads((Path(second.seg_path).parent / "result.json").read_text())
        assert result["seg"]["replaces"] == {"seg_series_uid": first.seg_series_uid, "revision": 1}
        assert second.result["replaces"]["job_id"] == first.id
        created = [e for e in events(service.data_dir, "seg.created") if e["job_id"] == second.id]
        assert created[0]["replaces_job"] == first.id and created[0]["replaces_seg_series_uid"] == first.seg_series_uid
        assert [e["job_id"] for e in events(service.data_dir, "job.superseded")] == [first.id]


def test_slice_gap_fails_visibly_after_the_grace_period(tmp_path, study_dir):
    files = sorted(study_dir.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    with running(tmp_path) as (service, client):
        assert storescu(service.dicom_port, files[:10] + files[11:]).returncode == 0
        job = jobs_in(service, "failed")[0]
        assert job.error_code.startswith("geometry.") and "ImagePositionPatient" in job.error
        assert events(service.data_dir, "study.continuity_wait")
        assert client.get(f"/studies/{job.study_uid}").json()["jobs"][0]["state"] == "failed"


def test_destination_down_retries_then_fails_visibly(tmp_path, study_dir):
    with running(tmp_path, free_port(), send_retries=2) as (service, client):
        assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
        job = jobs_in(service, "failed")[0]
        study = client.get(f"/studies/{job.study_uid}").json()
        delivery = study["jobs"][0]["deliveries"][0]
        assert delivery["state"] == "failed" and delivery["attempts"] == 3
        assert Path(job.seg_path).is_file(), "the SEG is kept, never dropped"
        assert len(events(service.data_dir, "seg.send_failed")) == 3
        assert events(service.data_dir, "alert.job_failed")
        assert 'medseg_seg_sends_total{result="failure"} 3.0' in client.get("/metrics").text


def test_disk_floor_answers_out_of_resources(tmp_path, study_dir):
    with running(tmp_path, disk_floor_mb=10**9) as (service, _):
        assert _send(service.dicom_port, sorted(study_dir.glob("*.dcm"))[:1]) == [0xA700]
        assert events(service.data_dir, "alert.disk_floor")


def test_four_concurrent_associations(tmp_path):
    folders = []
    for i in range(4):
        folder = tmp_path / f"study{i}"
        write_study(folder, small_phantom(seed=40 + i, shape=(16, 48, 48), n_tumors=1))
        folders.append(folder)
    with running(tmp_path) as (service, client):
        results = [None] * 4
        aets = ["TESTPACS", "PACS2", "PACS3", "PACS4"]
        reading = threading.Event()

        def push(i):
            results[i] = storescu(service.dicom_port, sorted(folders[i].glob("*.dcm")), calling_ae=aets[i])

        def read_audit():  # API reads are audited too: a third kind of concurrent writer
            while not reading.wait(0.02):  # not a busy loop: it would starve the node and the worker of the GIL
                assert client.get("/audit", params={"limit": 5}).status_code == 200
        threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
        reader = threading.Thread(target=read_audit)
        reader.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.returncode == 0 for r in results)
        done = jobs_in(service, "sent", 4)
        reading.set()
        reader.join()
        assert sorted(j.calling_ae for j in done) == sorted(aets)
        result = verify(service.audit_log)
        assert result.ok and result.events == result.head_seq
        assert len(events(service.data_dir, "audit.read")) > 0 and len(events(service.data_dir, "seg.created")) == 4


def test_dicom_node_imports_no_ml_code():
    code = ("import sys, dicom_node.server, dicom_node.handlers, dicom_node.scu, medseg.jobs.assembly; "
            "bad = [m for m in ('torch', 'monai', 'highdicom') if m in sys.modules]; assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_a_seg_the_headers_cannot_make_fails_the_job_as_an_input_error_not_the_model(tmp_path):
    """A series whose SpecificCharacterSet pydicom cannot decode (issue 17): the segmentation runs,
    the SEG cannot be written; the job fails with seg.unwritable, no model.failed, no fallback,
    the model stays loaded and /ready stays 200."""
    import pydicom

    from tests.conftest import small_phantom, write_study

    folder = tmp_path / "study"
    write_study(folder, small_phantom(seed=9, shape=(16, 48, 48), n_tumors=1))
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 999"
        ds.PatientName = "M\u00fcller^Hans".encode("latin-1")
        ds.save_as(path)
    with running(tmp_path) as (service, client):
        assert storescu(service.dicom_port, sorted(folder.glob("*.dcm"))).returncode == 0
        job = jobs_in(service, "failed")[0]
        assert job.error_code == "seg.unwritable", job.error
        assert not events(service.data_dir, "model.failed") and not events(service.data_dir, "model.fallback_used")
        assert client.get("/ready").status_code == 200


def test_results_that_cannot_be_written_send_the_job_back_to_the_queue_not_to_the_fallback(tmp_path, study_dir):
    """The results folder unusable (a file where the folder goes: what a full or broken disk does to
    the writer): not the model's failure (no model.failed, no fallback), not the study's (the job
    is not failed); the job goes back to the queue and, once storage works, runs and is sent."""
    import shutil

    with storescp(tmp_path / "pacs") as dest_port, running(tmp_path, dest_port) as (service, _):
        results = service.settings.service.results_dir
        shutil.rmtree(results, ignore_errors=True)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text("not a folder")
        assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
        requeued = wait_for(lambda: events(service.data_dir, "job.requeued"), 120, what="the job back in the queue")
        assert "StorageError" in requeued[0]["reason"]
        assert not events(service.data_dir, "model.failed") and not events(service.data_dir, "job.failed")
        results.unlink()
        job = jobs_in(service, "sent")[0]
        assert job.error_code in ("", None) and (results / str(job.id) / "seg.dcm").is_file()


def test_a_series_with_instances_refused_for_lack_of_space_is_held_until_they_arrive(tmp_path, study_dir):
    """Issue 17: half a series acknowledged, the rest refused 0xA700 (disk floor): the half must not
    become a normal SEG. Held (study.series_incomplete), then the sender's retry completes it and
    exactly one SEG, over every slice, goes out."""
    import pydicom

    files = sorted(study_dir.glob("*.dcm"))
    with storescp(tmp_path / "pacs") as dest_port, running(tmp_path, dest_port) as (service, client):
        assert storescu(service.dicom_port, files[:12]).returncode == 0
        service.spool.disk_floor_bytes = 10**15  # the disk is "full" now
        ready = client.get("/ready")  # a load balancer stops sending here while it refuses everything
        assert ready.status_code == 503 and ready.json()["checks"]["spool_space"] is False
        refused = storescu(service.dicom_port, files[12:])
        assert "A700" in refused.stdout + refused.stderr or refused.returncode != 0
        held = wait_for(lambda: events(service.data_dir, "study.series_incomplete"), 30, what="the hold")
        assert held[0]["refused"] == 1 and held[0]["received"] == 12  # storescu halts at the first refusal
        time.sleep(2.5)  # more than the quiet period: still nothing queued
        assert service.jobs.jobs() == []
        service.spool.disk_floor_bytes = 0  # space again; the PACS retries the whole study
        assert client.get("/ready").json()["checks"] == {"scp_listening": True, "database": True, "model_loaded": True,
                                                          "workers_running": True, "spool_space": True,
                                                          "audit_writable": True}
        assert storescu(service.dicom_port, files).returncode == 0
        job = jobs_in(service, "sent")[0]
        assert len(service.jobs.jobs()) == 1 and job.instances == len(files)
        seg = pydicom.dcmread(job.seg_path, stop_before_pixels=True)
        assert int(seg.NumberOfFrames) == len(files)


def test_a_held_series_whose_refused_instances_never_come_fails_visibly(tmp_path, study_dir):
    files = sorted(study_dir.glob("*.dcm"))
    with running(tmp_path, incomplete_hold_s=1.0) as (service, _):
        assert storescu(service.dicom_port, files[:10]).returncode == 0
        service.spool.disk_floor_bytes = 10**15
        storescu(service.dicom_port, files[10:])
        job = jobs_in(service, "failed")[0]
        assert job.error_code == "study.incomplete" and "never arrived (10 received)" in job.error
        assert not job.seg_path


#: a sender that dies mid-series: stores the first N files of a folder, then exits without releasing
#: (the kernel closes its socket: what a crashed modality or a pulled cable looks like to the node)
CRASHING_SENDER = """
import os, sys
import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from pydicom.uid import ExplicitVRLittleEndian
port, n, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
ae = AE(ae_title="TESTPACS")
ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG")
assert all(assoc.send_c_store(pydicom.dcmread(f)).Status == 0 for f in files[:n])
print("stored", n, flush=True)
os._exit(0)
"""


def test_a_series_cut_off_by_a_crashed_sender_is_held_until_a_complete_resend(tmp_path, study_dir):
    """Issue 17: nothing refused, the sender gone after 10 of 24 instances: not segmented (held,
    study.series_incomplete aborted=True); the PACS's resend, released normally, gives one SEG of
    every slice."""
    import pydicom

    files = sorted(study_dir.glob("*.dcm"))
    with storescp(tmp_path / "pacs") as dest_port, running(tmp_path, dest_port) as (service, _):
        crashed = subprocess.run([sys.executable, "-c", CRASHING_SENDER, str(service.dicom_port), "10",
                                  *map(str, files)], capture_output=True, text=True, timeout=120)
        assert crashed.stdout.strip() == "stored 10", crashed.stderr
        held = wait_for(lambda: events(service.data_dir, "study.series_incomplete"), 30, what="the hold")
        assert held[0]["aborted"] is True and held[0]["refused"] == 0 and held[0]["received"] == 10
        received = events(service.data_dir, "dicom.instances.received")
        assert [e["ended"] for e in received] == ["aborted"] and received[0]["count"] == 10
        time.sleep(2.5)  # more than the quiet period: still nothing queued
        assert service.jobs.jobs() == []
        assert storescu(service.dicom_port, files).returncode == 0  # the resend, released
        job = jobs_in(service, "sent")[0]
        assert len(service.jobs.jobs()) == 1 and job.instances == len(files)
        assert int(pydicom.dcmread(job.seg_path, stop_before_pixels=True).NumberOfFrames) == len(files)


@pytest.mark.parametrize("hold_aborted", [True, False])
def test_an_aborted_series_without_a_resend_fails_visibly_unless_aborts_are_trusted(tmp_path, study_dir, hold_aborted):
    files = sorted(study_dir.glob("*.dcm"))
    with storescp(tmp_path / "pacs") as dest_port, \
            running(tmp_path, dest_port, incomplete_hold_s=1.0, hold_aborted=hold_aborted) as (service, _):
        ae = AE(ae_title="TESTPACS")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", service.dicom_port, ae_title="MEDSEG")
        assert all(assoc.send_c_store(pydicom.dcmread(f)).Status == 0 for f in files[:8])
        assoc.abort()  # a real A-ABORT
        if hold_aborted:
            job = jobs_in(service, "failed")[0]
            assert job.error_code == "study.incomplete" and "aborted" in job.error and "(8 received)" in job.error
            assert not job.seg_path
        else:  # a sender that always aborts: the quiet period alone completes the series
            job = jobs_in(service, "sent")[0]
            assert job.instances == 8 and not events(service.data_dir, "study.series_incomplete")


def _push_concurrently(port: int, files: list[Path], n: int) -> list[int]:
    """C-STORE ``files`` on ``n`` associations opened at the same moment; every status, in any order."""
    statuses: list[int] = []
    barrier = threading.Barrier(n)

    def push(part: list[Path]) -> None:
        ae = AE(ae_title="TESTPACS")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        barrier.wait()
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG")
        statuses.extend(int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in part)
        assoc.release()

    threads = [threading.Thread(target=push, args=(files[i::n],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_a_fresh_node_stores_every_instance_of_eight_concurrent_associations(tmp_path, study_dir):
    """Issue 17: first C-STOREs of a freshly started node, 8 associations at once, three fresh
    nodes in a row: every instance answered 0x0000 and on disk (the patient key is created before
    the node listens, not raced for by the first handlers)."""
    files = sorted(study_dir.glob("*.dcm"))
    for run in range(3):
        with running(tmp_path / f"run-{run}") as (service, _):
            statuses = _push_concurrently(service.dicom_port, files, 8)
            assert statuses == [0] * len(files), f"run {run}: {statuses}"
            assert len(list(service.spool.root.rglob("*.dcm"))) == len(files)


def test_node_fails_closed_while_the_audit_trail_cannot_be_written(tmp_path, study_dir):
    """Issue 17: with audit writes failing, the node kept acknowledging studies recorded nowhere.
    The fault is real: the trail's table is renamed away under the running service (every insert
    then fails, as on a broken database), and renamed back."""
    import sqlite3

    files = sorted(study_dir.glob("*.dcm"))
    with running(tmp_path) as (service, client):
        assert _send(service.dicom_port, files[:1]) == [0x0000]
        db = sqlite3.connect(service.data_dir / "medseg.db", timeout=30)
        db.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
        db.commit()
        first = _send(service.dicom_port, files[1:2])  # its outcome cannot be recorded: refused
        assert first == [0xA700]
        assert _send(service.dicom_port, files[2:4]) == [0xA700, 0xA700]  # closed: refused at once
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["audit_writable"] is False
        db.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        db.commit()
        db.close()
        # it opens again by itself: the next C-STORE after the retry interval probes and succeeds
        statuses = wait_for(lambda: (lambda s: s if s == [0x0000] else None)(_send(service.dicom_port, files[1:2])),
                            15, interval=0.5, what="the node to accept again")
        assert statuses == [0x0000] and client.get("/ready").json()["checks"]["audit_writable"] is True
        restored = events(service.data_dir, "audit.restored")
        assert len(restored) == 1 and restored[0]["refused"] >= 3 and restored[0]["outage_s"] > 0
        assert storescu(service.dicom_port, files).returncode == 0  # the PACS resends the study
        job = jobs_in(service, "sent")[0]
        assert job.instances == len(files)
        verified = subprocess.run([sys.executable, "-m", "medseg", "audit", "verify"], capture_output=True, text=True,
                                  env={**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(service.data_dir)})
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_worker_that_cannot_continue_fails_health_and_closes_the_node(tmp_path, study_dir):
    """Issue 17: a dead worker thread left the node acknowledging studies nobody would process.
    Every Exception of a job is caught now; what can still end the thread is a BaseException
    (SystemExit from a library). It is injected here, because no real input raises one."""
    files = sorted(study_dir.glob("*.dcm"))
    with running(tmp_path) as (service, client):
        assert client.get("/health").json()["status"] == "ok"

        def exits(job):
            raise SystemExit(3)
        service.worker.run_job = exits
        assert storescu(service.dicom_port, files).returncode == 0  # acknowledged: the worker was alive
        wait_for(lambda: not service.worker.alive(), 60, what="the worker thread to end")
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failing"
        assert "worker thread has stopped" in health.json()["problem"]
        assert _send(service.dicom_port, files[:1]) == [0xA700]  # the node no longer takes studies
        refused = events(service.data_dir, "dicom.instance.rejected")
        assert refused[-1]["reason_code"] == "node.cannot_continue" and refused[-1]["status"] == "0xA700"
        (job,) = service.jobs.jobs()
        assert job.state == "queued", "the job the thread held is back in the queue, for the restart"
        assert "worker thread ended (SystemExit)" in events(service.data_dir, "job.requeued")[-1]["reason"]
