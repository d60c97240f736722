"""The audit trail of a running service: a real study pushed by storescu, read back through the
CLI and the API, verified, tampered with, exported; every read is itself audited."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys

import lxml.etree as et
import pytest
import rnc2rng
from pydicom.uid import generate_uid

from audit.verify import verify
from tests.conftest import PHANTOM_MODEL, PHI_ID, PHI_NAME
from tests.node_helpers import events, storescp, storescu, wait_for
from tests.test_audit import SCHEMA
from tests.test_dicom_node import _variant, jobs_in, running

pytestmark = pytest.mark.model


def _cli(service, *args) -> subprocess.CompletedProcess:
    env = {"MEDSEG_SERVICE__DATA_DIR": str(service.data_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "medseg", "audit", *args], capture_output=True, text=True, env=env)


def test_postmortem_from_the_trail(tmp_path, study_dir):
    sop = generate_uid()
    scout = _variant(sorted(study_dir.glob("*.dcm"))[0], tmp_path / "scout.dcm",  # a one-slice series
                     lambda d: (setattr(d, "SeriesInstanceUID", generate_uid()), setattr(d, "SOPInstanceUID", sop),
                                setattr(d.file_meta, "MediaStorageSOPInstanceUID", sop)))
    t1 = dt.datetime.now(dt.timezone.utc).isoformat()
    with storescp(tmp_path / "pacs") as dest_port, running(tmp_path, dest_port) as (service, client):
        assert storescu(service.dicom_port, [*sorted(study_dir.glob("*.dcm")), scout]).returncode == 0
        job = jobs_in(service, "sent")[0]
        wait_for(lambda: events(service.data_dir, "study.series_not_selected"), 30, what="the scout's decision")
        study = job.study_uid

        # the story of the study, from the CLI
        story = _cli(service, "timeline", study)
        assert story.returncode == 0, story.stderr
        lines = story.stdout.splitlines()
        for action in ("dicom.instances.received", "study.series_selected", "study.series_not_selected", "job.queued",
                       "job.started", "seg.created", "job.finished", "seg.sent"):
            assert any(f" {action} " in line for line in lines), action
        assert "single slice" in story.stdout, "the scout's rejection reason is in the story"

        # "all studies segmented by model X between T1 and T2, and their outcomes": one query
        t2 = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
        r = _cli(service, "query", "--model", PHANTOM_MODEL.replace("/", ":"), "--action", "job.finished", "--since", t1, "--until", t2,
                 "--format", "json")
        rows = json.loads(r.stdout)
        assert [(x["study_uid"], x["job_id"]) for x in rows] == [(study, job.id)]
        csv_out = _cli(service, "query", "--study", study, "--format", "csv").stdout
        assert csv_out.splitlines()[0].startswith("seq,ts,action")

        # the API answers the same, and records who asked
        api = client.get("/audit", params={"study": study, "action": "seg.*"}).json()["events"]
        assert [e["action"] for e in api] == ["seg.created", "seg.sent"]
        assert client.get(f"/audit/studies/{study}/timeline").json()["events"][0]["action"] == "dicom.instances.received"
        assert client.get("/audit", params={"since": "yesterday"}).status_code == 422
        reads = events(service.data_dir, "audit.read")
        assert {r["actor"] for r in reads} >= {"token:test-suite"} and any(r["actor"].startswith("cli:") for r in reads)

        # intact, exportable as schema-valid ATNA, no patient data anywhere
        assert verify(service.audit_log).ok
        export = _cli(service, "export", "--format", "atna")
        schema = et.RelaxNG(et.fromstring(rnc2rng.dumps(rnc2rng.loads(SCHEMA.read_text())).encode()))
        messages = export.stdout.splitlines()
        assert len(messages) > 10 and all(schema.validate(et.fromstring(m.encode())) for m in messages)
        everything = _cli(service, "export", "--format", "jsonl").stdout
        assert PHI_NAME not in everything and PHI_ID not in everything
        assert service.events.pseudonymize(PHI_ID) in everything

    # tamper with the stopped service's database: verify names the event and exits 1
    assert _cli(service, "verify").returncode == 0
    db = sqlite3.connect(service.data_dir / "medseg.db")
    db.execute("UPDATE audit_events SET outcome = 'failure' WHERE action = 'seg.sent'")
    db.commit()
    db.close()
    broken = _cli(service, "verify")
    assert broken.returncode == 1 and "BROKEN" in broken.stderr and "altered" in broken.stderr


def test_truncation_is_caught_by_the_anchors(tmp_path, study_dir):
    with running(tmp_path) as (service, _):
        assert storescu(service.dicom_port, sorted(study_dir.glob("*.dcm"))).returncode == 0
        jobs_in(service, "sent")
    anchors = (service.data_dir / "audit-anchors.jsonl").read_text().splitlines()
    assert len(anchors) >= 2, "anchored at start and at stop"
    db = sqlite3.connect(service.data_dir / "medseg.db")
    last = db.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
    db.execute("DELETE FROM audit_events WHERE seq > ?", (last - 3,))
    keep = db.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    db.execute("UPDATE audit_head SET seq = ?, hash = ?", keep)
    db.commit()
    db.close()
    broken = _cli(service, "verify")  # the head was rewritten to match the cut: its seal no longer does
    assert broken.returncode == 1 and "head row rewritten" in broken.stderr


def test_keys_are_created_once_whole_and_race_free(tmp_path):
    """Issue 17: concurrent first uses of a missing key file (first C-STOREs of a fresh node) all get
    the same complete key; the file is 32 bytes, mode 0600, and no temporary file is left."""
    import os
    import threading

    from medseg.app.auditing import _load_key

    path = tmp_path / "keys" / "audit.key"
    barrier, keys = threading.Barrier(16), []

    def first_use() -> None:
        barrier.wait()
        keys.append(_load_key(path))

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 16 and len(set(keys)) == 1 and path.read_bytes() == keys[0] and len(keys[0]) == 32
    assert os.stat(path).st_mode & 0o777 == 0o600 and sorted(p.name for p in path.parent.iterdir()) == ["audit.key"]
