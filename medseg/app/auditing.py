"""The service's door to the audit trail: ``record(action, ...)`` with the objects as keywords.

Known keywords become indexed columns (study_uid, series_uid, sop_uid, job_id, model,
sha256, destination, patient, code); everything else goes to the event's details.
``connection=`` writes inside the caller's transaction (the job table does this, so a
state change and its event commit together). A failed write raises: audit fails closed.
Every ``anchor_every`` events the head (sequence, hash) is appended to the anchors file
and the log, so that truncating the tail is detectable (``medseg audit verify``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from pathlib import Path

from audit import AuditEvent, AuditLog
from audit.schemas import pseudonymize
from medseg.core.exceptions import MedsegError

log = logging.getLogger("medseg.audit")
COLUMNS = {"study_uid": "study_uid", "series_uid": "series_uid", "sop_uid": "sop_uid", "job_id": "job_id",
           "model": "model", "sha256": "model_sha256", "destination": "destination", "patient": "patient",
           "code": "reason_code"}


class Auditor:
    def __init__(self, log_: AuditLog, anchors_file: Path, key_file: Path, anchor_every: int = 1000) -> None:
        self.log, self.anchors_file, self.anchor_every = log_, Path(anchors_file), anchor_every
        self.key_file = Path(key_file)
        self._key: bytes | None = None
        self._anchor_lock = threading.Lock()
        self._anchored_seq = 0

    def __call__(self, action: str, *, outcome: str = "success", actor: str = "system", connection=None, **fields):
        return self.record(action, outcome=outcome, actor=actor, connection=connection, **fields)

    def record(self, action: str, *, outcome: str = "success", actor: str = "system", connection=None, **fields):
        columns, details = {}, {}
        for key, value in fields.items():
            if value is None:
                continue
            if key == "model":
                columns["model"] = str(value).replace("/", ":")  # one spelling: name:version
            elif key in COLUMNS:
                columns[COLUMNS[key]] = value if key == "job_id" else str(value)
            else:
                details[key] = value
        event = AuditEvent(action=action, outcome=outcome, actor=actor or "unknown", details=details, **columns)
        stored = self.log.append(event, connection=connection)
        if connection is None and stored.seq - self._anchored_seq >= self.anchor_every:
            self.anchor()  # (events inside a caller's transaction are anchored by the next one after it)
        return stored

    def pseudonymize(self, patient_id: str) -> str:
        if self._key is None:
            self._key = _load_key(self.key_file)
        return pseudonymize(patient_id, self._key)

    def anchor(self) -> tuple[int, str]:
        """Write the current head outside the database (anchors file, fsynced; and the log)."""
        with self._anchor_lock:
            seq, digest = self.log.head()
            self.anchors_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.anchors_file, "a", encoding="ascii") as f:
                f.write(json.dumps({"seq": seq, "hash": digest}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            log.info("audit anchor seq=%d hash=%s", seq, digest)
            self._anchored_seq = seq
            return seq, digest


def auditor_for(settings, service_engine) -> Auditor:
    """The configured audit trail: its own database if ``[audit] database_url`` is set, else the
    service's (so job state and its events share transactions); default files under the data dir."""
    from audit.db import make_engine

    data = Path(settings.service.data_dir)
    engine = make_engine(settings.audit.database_url) if settings.audit.database_url else service_engine
    return Auditor(AuditLog(engine), settings.audit.anchors_file or data / "audit-anchors.jsonl",
                   settings.audit.patient_key_file or data / "audit.key", settings.audit.anchor_every)


def _load_key(path: Path) -> bytes:
    if path.exists():
        key = path.read_bytes()
        if len(key) < 32:
            raise MedsegError(f"patient key file {path.name} holds fewer than 32 bytes", code="config.audit_key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
