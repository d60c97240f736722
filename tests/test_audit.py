"""The audit store on real SQLite: chain integrity, every kind of tampering, concurrency, ATNA schema."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import lxml.etree as et
import pytest
import rnc2rng
from sqlalchemy import delete, text, update

from audit import AuditEvent, AuditLog
from audit.db import make_engine
from audit.exceptions import PatientDataError, UnknownActionError
from audit.export import write_atna
from audit.query import AuditFilter, query, timeline
from audit.store import events_table, head_table
from audit.verify import verify

SCHEMA = Path(__file__).parent / "data" / "atna" / "audit-message.rnc"


@pytest.fixture
def log(tmp_path) -> AuditLog:
    audit = AuditLog(make_engine(f"sqlite:///{tmp_path / 'audit.db'}"))
    audit.create()
    for i in range(10):
        audit.append(AuditEvent(action="job.queued", study_uid=f"1.2.{i % 3}", job_id=i, model="ct-phantom:1.0.0",
                                details={"instances": 10 + i}))
    return audit


def test_append_and_verify(log):
    result = verify(log)
    assert result.ok and result.events == 10 and result.head_seq == 10
    assert [e.seq for e in query(log, AuditFilter(study_uid="1.2.1"))] == [2, 5, 8]
    assert len(query(log, AuditFilter(action="job.*"))) == 10


def _sql(log, statement):
    with log.engine.begin() as conn:
        conn.execute(statement)


def test_edited_field_is_caught(log):
    _sql(log, update(events_table).where(events_table.c.seq == 4).values(details='{"instances": 999}'))
    result = verify(log)
    assert not result.ok and result.at_seq == 4 and "altered" in result.problem


def test_deleted_event_is_caught(log):
    _sql(log, delete(events_table).where(events_table.c.seq == 6))
    result = verify(log)
    assert not result.ok and result.at_seq == 7 and "missing" in result.problem


def test_inserted_event_is_caught(log):
    # make room at 5 by renumbering the tail, then insert a well-formed-looking event there
    _sql(log, text("UPDATE audit_events SET seq = seq + 100 WHERE seq >= 5"))
    _sql(log, text("UPDATE audit_events SET seq = seq - 99 WHERE seq >= 105"))
    with log.engine.begin() as conn:
        row = dict(conn.execute(events_table.select().where(events_table.c.seq == 4)).mappings().one())
        conn.execute(events_table.insert().values({**row, "seq": 5, "actor": "intruder"}))
    result = verify(log)
    assert not result.ok and result.at_seq == 5


def test_swapped_events_are_caught(log):
    with log.engine.begin() as conn:
        a = dict(conn.execute(events_table.select().where(events_table.c.seq == 3)).mappings().one())
        b = dict(conn.execute(events_table.select().where(events_table.c.seq == 4)).mappings().one())
        conn.execute(delete(events_table).where(events_table.c.seq.in_([3, 4])))
        conn.execute(events_table.insert().values({**b, "seq": 3}))
        conn.execute(events_table.insert().values({**a, "seq": 4}))
    result = verify(log)
    assert not result.ok and result.at_seq == 3


def test_truncated_tail_is_caught_by_head_and_by_anchor(log):
    anchor = [(10, log.head()[1])]
    _sql(log, delete(events_table).where(events_table.c.seq > 7))
    assert not verify(log).ok, "head still says 10"
    with log.engine.begin() as conn:  # a careful intruder also rewinds the head
        last = conn.execute(events_table.select().where(events_table.c.seq == 7)).mappings().one()
        conn.execute(update(head_table).values(seq=7, hash=last["hash"]))
    assert verify(log).ok, "without an anchor a clean truncation is invisible (documented)"
    result = verify(log, anchor)
    assert not result.ok and "truncated" in result.problem


def test_concurrent_writers_never_fork_the_chain(log):
    errors = []

    def writer(n):
        try:
            for i in range(100):
                log.append(AuditEvent(action="dicom.instances.received", actor=f"AE{n}", details={"i": i}))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = verify(log)
    assert result.ok and result.events == 810


def test_vocabulary_and_patient_data_are_enforced():
    with pytest.raises(UnknownActionError):
        AuditEvent(action="job.exploded")
    with pytest.raises(PatientDataError):
        AuditEvent(action="job.queued", details={"PatientName": "TEST^PHI_SENTINEL"})
    with pytest.raises(PatientDataError):
        AuditEvent(action="job.queued", details={"nested": [{"patient_id": "X"}]})


def test_atna_export_validates_against_the_ps3_15_schema(log):
    log.append(AuditEvent(action="dicom.association.rejected", outcome="failure", actor="INTRUDER",
                          details={"peer": "10.1.2.3", "reason": "calling AE title not allowed"}))
    log.append(AuditEvent(action="seg.sent", study_uid="1.2.3", sop_uid="1.2.3.4", job_id=3, patient="ab" * 16,
                          destination="pacs"))
    log.append(AuditEvent(action="alert.job_failed", outcome="failure", study_uid="1.2.3", job_id=3,
                          details={"reason": "sending to pacs failed"}))
    schema = et.RelaxNG(et.fromstring(rnc2rng.dumps(rnc2rng.loads(SCHEMA.read_text())).encode()))
    out = io.StringIO()
    assert write_atna(query(log, AuditFilter()), out) == 13
    for line in out.getvalue().splitlines():
        doc = et.fromstring(line.encode())
        assert schema.validate(doc), schema.error_log
    assert "seg.sent" in out.getvalue() and "110180" in out.getvalue()


def test_atna_names_the_model_version_its_hash_and_the_reason(log):
    import base64

    log.append(AuditEvent(action="model.promoted", actor="token:on-call", model="ct-phantom:2.1.0", model_sha256="ab" * 32,
                          details={"reason": "validated on site data", "gate": {"ok": True, "dice": 1.0}}))
    log.append(AuditEvent(action="job.finished", study_uid="1.2.3", job_id=4, model="ct-phantom:2.1.0"))
    schema = et.RelaxNG(et.fromstring(rnc2rng.dumps(rnc2rng.loads(SCHEMA.read_text())).encode()))
    out = io.StringIO()
    write_atna(query(log, AuditFilter(action="model.*")), out)
    write_atna(query(log, AuditFilter(action="job.finished")), out)
    promoted, finished = (et.fromstring(line.encode()) for line in out.getvalue().splitlines())
    for doc in (promoted, finished):
        assert schema.validate(doc), schema.error_log
        model = [o for o in doc.iter("ParticipantObjectIdentification")
                 if o.find("ParticipantObjectIDTypeCode").get("csd-code") == "model"]
        assert [o.get("ParticipantObjectID") for o in model] == ["ct-phantom:2.1.0"]
    details = {d.get("type"): base64.b64decode(d.get("value")).decode() for d in promoted.iter("ParticipantObjectDetail")}
    assert details["reason"] == "validated on site data" and details["sha256"] == "ab" * 32
    assert json.loads(details["gate"]) == {"dice": 1.0, "ok": True}
    assert promoted.find(".//ActiveParticipant").get("UserID") == "token:on-call"


def test_timeline_includes_job_events_without_study(log):
    log.append(AuditEvent(action="job.started", job_id=1))
    assert [e.event.action for e in timeline(log, "1.2.1")] == ["job.queued", "job.queued", "job.queued", "job.started"]


def test_auditor_anchors_every_n_events_and_hashes_patient_ids(tmp_path, log):
    from medseg.app.auditing import Auditor

    auditor = Auditor(log, tmp_path / "anchors.jsonl", tmp_path / "audit.key", anchor_every=5)
    for i in range(12):
        auditor("job.queued", job_id=i, model="ct-phantom/1.0.0", patient=auditor.pseudonymize("PHI_SENTINEL_ID_0042"))
    anchors = [json.loads(x) for x in (tmp_path / "anchors.jsonl").read_text().splitlines()]
    assert [a["seq"] for a in anchors] == [11, 16, 21]  # first event, then every 5 (the fixture holds 10)
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600
    rows = query(log, AuditFilter(model="ct-phantom:1.0.0", limit=100))
    assert len(rows) == 22 and all(r.event.patient and "PHI" not in r.event.patient for r in rows[10:])
    assert verify(log, [(a["seq"], a["hash"]) for a in anchors]).ok
