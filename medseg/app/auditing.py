"""The service's door to the audit trail: ``record(action, ...)`` with the objects as keywords.

Known keywords become indexed columns (study_uid, series_uid, sop_uid, job_id, model,
sha256, destination, patient, code); everything else goes to the event's details.
``connection=`` writes inside the caller's transaction (the job table does this, so a
state change and its event commit together). A failed write raises: audit fails closed.
Every ``anchor_every`` events, and at each start and stop of the service, the head (sequence,
hash) is appended to the anchors file, the log and, if configured, a syslog host — each anchor
sealed with the chain key and chained to the one before (audit.verify), so that truncating the
tail, or rewriting the anchors, is detectable (``medseg audit verify``). Every event is also one
log line (``medseg.app.logs.event_line``: whitelisted fields, no patient or study identifiers).

Two keys, each 32 random bytes in a file (mode 0600) outside the database, created on first use:
the **chain key** (``[audit] chain_key_file``, default ``<data_dir>/audit-chain.key``) seals
events, head and anchors; the **patient key** (``patient_key_file``) makes the patient-ID hash.
Keep both off the database's backups; whoever holds the chain key can rewrite the trail.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import logging.handlers
import os
import secrets
import threading
from pathlib import Path

from audit import AuditEvent, AuditLog
from audit.schemas import pseudonymize
from audit.verify import anchor_seal, read_anchors
from medseg.app.logs import log_event
from medseg.core.exceptions import MedsegError

log = logging.getLogger("medseg.audit")
COLUMNS = {"study_uid": "study_uid", "series_uid": "series_uid", "sop_uid": "sop_uid", "job_id": "job_id",
           "model": "model", "sha256": "model_sha256", "destination": "destination", "patient": "patient",
           "code": "reason_code"}


class Auditor:
    def __init__(self, log_: AuditLog, anchors_file: Path, key_file: Path, anchor_every: int = 1000,
                 syslog_address: str = "") -> None:
        self.log, self.anchors_file, self.anchor_every = log_, Path(anchors_file), anchor_every
        self.key_file = Path(key_file)
        self._key: bytes | None = None
        self._anchor_lock, self._key_lock = threading.Lock(), threading.Lock()
        last = read_anchors(self.anchors_file)[-1:] if self.anchors_file.exists() else []
        self._anchored_seq = last[0].seq if last else 0
        self._anchor_mac = last[0].mac if last else ""
        self.syslog = _syslog_logger(syslog_address) if syslog_address else None

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
        log_event(stored)  # (inside a caller's transaction: logged before it commits)
        if connection is None and stored.seq - self._anchored_seq >= self.anchor_every:
            self.anchor()  # (events inside a caller's transaction are anchored by the next one after it)
        return stored

    def pseudonymize(self, patient_id: str) -> str:
        if self._key is None:
            self.load_keys()
        return pseudonymize(patient_id, self._key)

    def load_keys(self) -> None:
        """Read (or create) the patient key now: the service does this before the node accepts its
        first association, so concurrent first C-STOREs never race to create it."""
        with self._key_lock:
            if self._key is None:
                self._key = _load_key(self.key_file)

    def anchor(self) -> tuple[int, str]:
        """Write the current head outside the database: the anchors file (fsynced), the log and
        the syslog sink, sealed and chained to the previous anchor when the trail has a key."""
        self.anchors_file.parent.mkdir(parents=True, exist_ok=True)
        with self._anchor_lock, open(self.anchors_file, "a+", encoding="ascii") as f:
            # Several processes may share one trail and one anchors file (scale-out roles): under an
            # exclusive lock, each anchor chains to the file's last line, whoever wrote it, and the
            # head is read inside the lock, so anchors stay in the order of the trail
            fcntl.flock(f, fcntl.LOCK_EX)
            previous = _last_anchor_mac(f)
            seq, digest = self.log.head()
            ts = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            mac = anchor_seal(self.log.key, seq, digest, ts, previous) if self.log.key else ""
            line = json.dumps({"seq": seq, "hash": digest, "ts": ts, "mac": mac} if mac else {"seq": seq, "hash": digest})
            f.seek(0, os.SEEK_END)
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
            log.info("audit anchor %s", line)
            if self.syslog is not None:
                self.syslog.info("medseg audit anchor %s", line)
            self._anchored_seq, self._anchor_mac = seq, mac
            return seq, digest

    def start_anchors(self) -> None:
        """A keyed trail's first anchor, once: when nothing keyed has been written yet (a new trail,
        or one keyed just now). Missing anchors of a trail with keyed events are never re-created."""
        head = self.log.head_row()
        if self.log.key and not self._anchor_mac and head["keyed_from"] is not None and head["keyed_from"] > head["seq"]:
            self.anchor()


def _last_anchor_mac(f) -> str:
    """The seal of the last line of an open anchors file ("" if none: the first anchor, or unkeyed)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - 4096))
    lines = [line for line in f.read().splitlines() if line.strip()]
    return str(json.loads(lines[-1]).get("mac", "")) if lines else ""


def auditor_for(settings, service_engine, *, create_keys: bool = True) -> Auditor:
    """The configured audit trail: its own database if ``[audit] database_url`` is set, else the
    service's (so job state and its events share transactions); default files under the data dir.
    ``create_keys=False`` (reading and verifying): a missing chain key stays missing."""
    from audit.db import make_engine

    files = settings.audit_files()
    engine = make_engine(settings.audit.database_url) if settings.audit.database_url else service_engine
    key = _load_key(files["chain_key"]) if create_keys or files["chain_key"].exists() else None
    return Auditor(AuditLog(engine, key), files["anchors"], files["patient_key"], settings.audit.anchor_every,
                   settings.audit.syslog_address)


def _syslog_logger(address: str) -> logging.Logger:
    """Anchors to a syslog host (``host:port``, UDP) or socket (``/dev/log``), where the database cannot reach."""
    host, _, port = address.rpartition(":")
    target = address if address.startswith("/") else (host, int(port or 514))
    logger = logging.getLogger(f"medseg.audit.syslog.{address}")
    if not logger.handlers:
        handler = logging.handlers.SysLogHandler(address=target, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def _load_key(path: Path) -> bytes:
    if path.exists():
        key = path.read_bytes()
        if len(key) < 32:
            raise MedsegError(f"key file {path.name} holds fewer than 32 bytes", code="config.audit_key")
        return key
    # created whole or not at all, and race-free: written to a private temporary file, then linked
    # into place (link fails if another process or thread got there first: its key is read instead,
    # complete, since it too was linked only once written)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return _load_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key
