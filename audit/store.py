"""The event store: one append-only table plus a one-row head (last sequence number and hash).

Appending takes the head row's write lock first (an UPDATE), so concurrent writers — SCP
threads, the worker, the API, other processes on PostgreSQL — line up and the chain never
forks. ``append(event, connection=...)`` writes inside the caller's transaction: the event
commits or rolls back with the state change it records. Nothing here updates or deletes
an event.

With a key (``AuditLog(engine, key)``), each event from the head's ``keyed_from`` on gets its
seal (``mac``) and the head row its own (audit.chain). A trail made before keys existed is keyed
from its next event on, the first time it is opened with a key; its older events keep their
unkeyed chain, and ``verify`` says so.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from audit.chain import GENESIS, link, seal
from audit.exceptions import AuditWriteError
from audit.migrate import Migrations
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
    Column("mac", String(64), nullable=True),
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
    Column("keyed_from", Integer, nullable=True),
    Column("mac", String(64), nullable=True),
)
#: columns added after the first release, before migrations: (table, column, SQL type). A trail
#: from then lacks them; they are added (``legacy_columns``) before it is recorded as revision a0001
ADDED_COLUMNS = (("audit_events", "mac", "VARCHAR(64)"), ("audit_head", "keyed_from", "INTEGER"),
                 ("audit_head", "mac", "VARCHAR(64)"))
#: the trail's schema history (audit/migrations; version table audit_alembic_version). ``head`` is
#: the newest revision there (tests/test_schema.py checks it)
MIGRATIONS = Migrations(location=Path(__file__).with_name("migrations"), version_table="audit_alembic_version",
                        metadata=lambda: metadata, baseline="a0001", head="a0001", lock_id=7011921)


def legacy_columns(conn: Connection) -> None:
    """A trail made before migrations: the columns releases added by hand, before it is stamped."""
    present = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t in ("audit_events", "audit_head")}
    for table, column, sql_type in ADDED_COLUMNS:
        if column not in present[table]:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


def utc_timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def head_seal(key: bytes, seq: int, digest: str, keyed_from: int | None) -> str:
    return seal(key, "head", seq, digest, keyed_from)


class AuditLog:
    def __init__(self, engine: Engine, key: bytes | None = None) -> None:
        self.engine, self.key = engine, key

    def create(self) -> None:
        """The tables at the newest revision (created, or a trail from before migrations upgraded:
        :data:`MIGRATIONS`), the head row, and with a key the start of keying."""
        with self.engine.connect() as conn:
            current = MIGRATIONS.revision(conn)
        if current != MIGRATIONS.head:
            MIGRATIONS.upgrade(self.engine, legacy_columns)
        with self.engine.begin() as conn:
            head = conn.execute(select(head_table).where(head_table.c.id == 1)).mappings().first()
            if head is None:
                keyed_from = 1 if self.key else None
                conn.execute(insert(head_table).values(
                    id=1, seq=0, hash=GENESIS, keyed_from=keyed_from,
                    mac=head_seal(self.key, 0, GENESIS, keyed_from) if self.key else None))
            elif self.key and head["keyed_from"] is None:  # a trail from before keys: keyed from now on
                conn.execute(update(head_table).where(head_table.c.id == 1).values(
                    keyed_from=head["seq"] + 1, mac=head_seal(self.key, head["seq"], head["hash"], head["seq"] + 1)))

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
        last, prev, keyed_from = conn.execute(select(head_table.c.seq, head_table.c.hash, head_table.c.keyed_from)
                                              .where(head_table.c.id == 1)).one()
        keyed = self.key is not None and keyed_from is not None
        stored, rows = [], []
        for seq, event in enumerate(events, start=last - len(events) + 1):
            ts = utc_timestamp()
            fields = event.model_dump()
            digest = link(prev, seq, ts, fields)
            rows.append({**fields, "details": json.dumps(fields["details"], sort_keys=True, default=str),
                         "seq": seq, "ts": ts, "prev_hash": prev, "hash": digest,
                         "mac": seal(self.key, "event", seq, digest) if keyed and seq >= keyed_from else None})
            stored.append(StoredEvent(seq=seq, ts=ts, event=event, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(insert(events_table), rows)
        conn.execute(update(head_table).where(head_table.c.id == 1).values(
            hash=prev, mac=head_seal(self.key, last, prev, keyed_from) if keyed else None))
        return stored

    # -- reading -------------------------------------------------------------------------------
    def head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            row = conn.execute(select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)).first()
            return (row.seq, row.hash) if row else (0, GENESIS)

    def head_row(self) -> dict:
        """seq, hash, keyed_from and mac of the head (None where a trail from before keys lacks them)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*_present(conn, head_table)).where(head_table.c.id == 1)).mappings().first()
        return {"keyed_from": None, "mac": None, **dict(row)} if row else \
            {"seq": 0, "hash": GENESIS, "keyed_from": None, "mac": None}

    def rows(self, statement) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            return [to_stored(r) for r in conn.execute(statement)]

    def scan(self, batch: int = 20000) -> Iterator[dict]:
        """Every stored row in sequence order, as raw mappings (for verify)."""
        after = 0
        with self.engine.connect() as conn:
            columns = _present(conn, events_table)
            while True:
                rows = conn.execute(select(*columns).where(events_table.c.seq > after)
                                    .order_by(events_table.c.seq).limit(batch)).mappings().all()
                if not rows:
                    return
                yield from rows
                after = rows[-1]["seq"]


def _present(conn: Connection, table: Table) -> list:
    """The table's columns that exist in this database (a trail from before keys lacks ``mac``...)."""
    names = {c["name"] for c in inspect(conn).get_columns(table.name)}
    return [c for c in table.columns if c.name in names]


def row_fields(row) -> dict:
    """The hashed fields of a stored row, as they were when it was appended."""
    fields = {name: row[name] for name in FIELDS if name != "details"}
    fields["details"] = json.loads(row["details"])
    return fields


def to_stored(row) -> StoredEvent:
    m = row._mapping if hasattr(row, "_mapping") else row
    event = AuditEvent.model_construct(**row_fields(m))
    return StoredEvent(seq=m["seq"], ts=m["ts"], event=event, prev_hash=m["prev_hash"], hash=m["hash"])
