"""Exports: JSON lines (every stored field, hashes included) and DICOM audit messages (PS3.15 A.5).

The ATNA form writes one ``AuditMessage`` document per event, one per line (the unit a
syslog transport carries, RFC 5425/5426). The mapping: EventID from the action's DCM code
(audit/vocabulary.py), the action itself as EventTypeCode (code system ``medseg``);
ActiveParticipants are the actor (requestor) and this application; objects are the
study (110180 Study Instance UID), the SOP instance (110181), the job, the model version
(``name:version``, system object, role 4 Resource, with its weights' sha256 and the event's
reason as ParticipantObjectDetail), and the patient by the keyed hash only (never the patient
ID). A failure's reason is also its EventOutcomeDescription.
"""

from __future__ import annotations

import base64
import json
import socket
from typing import Iterable, TextIO
from xml.etree import ElementTree as ET

from audit.schemas import StoredEvent
from audit.vocabulary import ACTIONS

OUTCOME = {"success": "0", "failure": "4"}


def write_jsonl(events: Iterable[StoredEvent], out: TextIO) -> int:
    n = 0
    for e in events:
        out.write(json.dumps(e.as_dict(), sort_keys=True, default=str) + "\n")
        n += 1
    return n


def atna_message(e: StoredEvent, source_id: str | None = None, application_ae: str = "MEDSEG") -> str:
    ev = e.event
    _, event_code, action_code = ACTIONS[ev.action]
    msg = ET.Element("AuditMessage")
    ident = ET.SubElement(msg, "EventIdentification", EventActionCode=action_code,
                          EventDateTime=e.ts.replace("Z", "+00:00"),
                          EventOutcomeIndicator="8" if ev.action.startswith("alert.") else OUTCOME[ev.outcome])
    ET.SubElement(ident, "EventID", {"csd-code": event_code, "codeSystemName": "DCM", "originalText": ev.action})
    ET.SubElement(ident, "EventTypeCode", {"csd-code": ev.action, "codeSystemName": "medseg", "originalText": ev.action})
    reason = ev.details.get("reason") or ev.reason_code
    if ev.outcome == "failure" and reason:
        ET.SubElement(ident, "EventOutcomeDescription").text = str(reason)
    peer = ev.details.get("peer")
    actor = ET.SubElement(msg, "ActiveParticipant", UserID=ev.actor or "unknown", UserIsRequestor="true")
    if peer:
        actor.set("NetworkAccessPointID", str(peer))
        actor.set("NetworkAccessPointTypeCode", "2")
    app = ET.SubElement(msg, "ActiveParticipant", UserID=application_ae, UserIsRequestor="false",
                        AlternativeUserID="medseg")
    ET.SubElement(app, "RoleIDCode", {"csd-code": "110150", "codeSystemName": "DCM", "originalText": "Application"})
    source = ET.SubElement(msg, "AuditSourceIdentification", AuditSourceID=source_id or f"medseg@{socket.gethostname()}")
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4"})
    if ev.study_uid:
        _object(msg, ev.study_uid, "2", "3", "110180", "DCM", "Study Instance UID", "Study")
    if ev.sop_uid:
        _object(msg, ev.sop_uid, "2", "3", "110181", "DCM", "SOP Instance UID", "SOP Instance")
    if ev.job_id is not None:
        _object(msg, str(ev.job_id), "2", "20", "job", "medseg", "Job", "Job")
    if ev.model:
        details = {"sha256": ev.model_sha256, "manifest_sha256": ev.details.get("manifest_sha256"), "reason": reason,
                   "gate": ev.details.get("gate")}
        _object(msg, ev.model, "2", "4", "model", "medseg", "Model version (name:version)", "Model",
                {k: v for k, v in details.items() if v})
    if ev.patient:
        _object(msg, ev.patient, "1", "1", "2", "RFC-3881", "Patient Number (keyed hash)", "Patient (pseudonymized)")
    return ET.tostring(msg, encoding="unicode")


def _object(msg, object_id, type_code, role, code, system, text, name, details: dict | None = None) -> None:
    obj = ET.SubElement(msg, "ParticipantObjectIdentification", ParticipantObjectID=object_id,
                        ParticipantObjectTypeCode=type_code, ParticipantObjectTypeCodeRole=role)
    ET.SubElement(obj, "ParticipantObjectIDTypeCode", {"csd-code": code, "codeSystemName": system, "originalText": text})
    ET.SubElement(obj, "ParticipantObjectName").text = name
    for key, value in (details or {}).items():  # values are base64 (PS3.15 ValuePair)
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        ET.SubElement(obj, "ParticipantObjectDetail", type=key, value=base64.b64encode(text.encode("utf-8")).decode("ascii"))


def write_atna(events: Iterable[StoredEvent], out: TextIO, application_ae: str = "MEDSEG") -> int:
    n = 0
    for e in events:
        out.write(atna_message(e, application_ae=application_ae) + "\n")
        n += 1
    return n


def export(log, f, out: TextIO, fmt: str = "jsonl", application_ae: str = "MEDSEG") -> int:
    """Every event ``f`` (an :class:`audit.query.AuditFilter`) selects, ``f.limit`` per query, written
    as JSON lines or ATNA messages; the count. The CLI's ``audit export`` and the dashboard's."""
    from audit.query import query

    offset = total = 0
    while True:
        rows = query(log, f.model_copy(update={"offset": offset}))
        total += write_jsonl(rows, out) if fmt == "jsonl" else write_atna(rows, out, application_ae=application_ae)
        if len(rows) < f.limit:
            return total
        offset += f.limit
