"""The event store: one append-only table plus a one-row head (last sequence number and hash).

Appending takes the head row's write lock first (an UPDATE), so concurrent writers — SCP
threads, the worker, the API, other processes on PostgreSQL — line up and the chain never
forks. ``append(event, connection=...)`` writes inside the caller's transaction: the event
commits or rolls back with the state change it records. Nothing here updates or deletes
an event.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Iterable, Iterator

from sqlalchemy import Column, Connection, Engine, Index, Integer, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from audit.chain import GENESIS, link
from audit.exceptions import AuditWriteError
from audit.schemas import AuditEvent, StoredEvent

metadata = MetaData()
FIELDS = tuple(AuditEvent.model_fields)

events_table = Table(
    "audit_events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(8), nullable=False),
    Column("reason_code", String(64), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("sop_uid", String(64), nullable=False),
    Column("job_id", Integer, nullable=True),
    Column("model", String(128), nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("patient", String(64), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_study_seq", "study_uid", "seq"),
    Index("ix_audit_action_seq", "action", "seq"),
    Index("ix_audit_actor_seq", "actor", "seq"),
    Index("ix_audit_model_seq", "model", "seq"),
    Index("ix_audit_ts", "ts"),
    Index("ix_audit_job", "job_id"),
)
head_table = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)


def utc_timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            if conn.execute(select(head_table.c.id)).first() is None:
                conn.execute(insert(head_table).values(id=1, seq=0, hash=GENESIS))

    # -- writing -------------------------------------------------------------------------------
    def append(self, event: AuditEvent, *, connection: Connection | None = None) -> StoredEvent:
        return self.append_many([event], connection=connection)[0]

    def append_many(self, events: Iterable[AuditEvent], *, connection: Connection | None = None) -> list[StoredEvent]:
        """Append in order, in one transaction (the caller's, if given). Raises AuditWriteError."""
        events = list(events)
        if not events:
            return []
        try:
            if connection is not None:
                return self._append(connection, events)
            with self.engine.begin() as conn:
                return self._append(conn, events)
        except SQLAlchemyError as exc:
            raise AuditWriteError(f"audit event could not be stored ({type(exc).__name__})") from None

    def _append(self, conn: Connection, events: list[AuditEvent]) -> list[StoredEvent]:
        conn.execute(update(head_table).where(head_table.c.id == 1).values(seq=head_table.c.seq + len(events)))
        last, prev = conn.execute(select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)).one()
        stored, rows = [], []
        for seq, event in enumerate(events, start=last - len(events) + 1):
            ts = utc_timestamp()
            fields = event.model_dump()
            digest = link(prev, seq, ts, fields)
            rows.append({**fields, "details": json.dumps(fields["details"], sort_keys=True, default=str),
                         "seq": seq, "ts": ts, "prev_hash": prev, "hash": digest})
            stored.append(StoredEvent(seq=seq, ts=ts, event=event, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(insert(events_table), rows)
        conn.execute(update(head_table).where(head_table.c.id == 1).values(hash=prev))
        return stored

    # -- reading -------------------------------------------------------------------------------
    def head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            row = conn.execute(select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)).first()
            return (row.seq, row.hash) if row else (0, GENESIS)

    def rows(self, statement) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            return [to_stored(r) for r in conn.execute(statement)]

    def scan(self, batch: int = 20000) -> Iterator[dict]:
        """Every stored row in sequence order, as raw mappings (for verify)."""
        after = 0
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(select(events_table).where(events_table.c.seq > after)
                                    .order_by(events_table.c.seq).limit(batch)).mappings().all()
                if not rows:
                    return
                yield from rows
                after = rows[-1]["seq"]


def row_fields(row) -> dict:
    """The hashed fields of a stored row, as they were when it was appended."""
    fields = {name: row[name] for name in FIELDS if name != "details"}
    fields["details"] = json.loads(row["details"])
    return fields


def to_stored(row) -> StoredEvent:
    m = row._mapping if hasattr(row, "_mapping") else row
    event = AuditEvent.model_construct(**row_fields(m))
    return StoredEvent(seq=m["seq"], ts=m["ts"], event=event, prev_hash=m["prev_hash"], hash=m["hash"])
