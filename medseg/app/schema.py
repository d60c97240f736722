"""The databases' schema versions: Alembic migrations, ``medseg db upgrade``, and the check every
process makes before it uses the database.

Two histories, run by one runner (:mod:`audit.migrate`): the service tables (:data:`SERVICE`,
``medseg/app/migrations``) and the audit trail's (:data:`audit.store.MIGRATIONS`,
``audit/migrations``), which may live in a database of their own (``[audit] database_url``).

* **A new database** is created at the newest revisions by the first process that opens it: the
  embedded default needs no command.
* **A database at an older revision** is refused with one line naming both revisions and the
  command that upgrades it (``medseg db upgrade``; back it up first with ``medseg backup``). A
  schema change is never applied behind an operator's back: with several processes sharing one
  PostgreSQL database (scale-out), one of them upgrading while the others run the old code would
  break those.
* **A database of a newer medseg** (a revision this code does not know) is refused too: it would
  be read with the wrong columns.
* **A database made before migrations existed** (tables created by ``create_all``, no version
  table; every release up to 0.1.0 of 2026-12-02) is the first revision, ``0001`` (``a0001`` for
  the audit tables), if every table and column of that revision is there: ``medseg db upgrade``
  records it as such ("stamps" it), then upgrades. One that lacks any is refused with the missing
  names (a release older than the baseline: upgrade it with that release's medseg first).

The migrations are written with Alembic's autogenerate against the ORM (``SERVICE.autogenerate``),
read and corrected by hand; SQLite gets ``batch_alter_table`` operations, PostgreSQL plain
``ALTER TABLE``. ``tests/test_schema.py`` checks that each history builds exactly what the code
declares, on SQLite and PostgreSQL, and upgrades a 0.1.0 database with data in it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from audit.exceptions import SchemaError as AuditSchemaError
from audit.migrate import Migrations, SchemaState
from medseg.core.exceptions import MedsegError

__all__ = ["SERVICE", "SchemaError", "SchemaState", "check", "histories", "upgrade"]


class SchemaError(MedsegError):
    """The database's schema is not the one this code needs."""


def _service_metadata() -> MetaData:
    from medseg.app.database import metadata

    return metadata()


#: the service tables' history. ``head`` is the newest revision in migrations/versions: a database
#: at it passes the start check with one query, without importing Alembic (0.2 s of every command)
SERVICE = Migrations(location=Path(__file__).with_name("migrations"), version_table="alembic_version",
                     metadata=_service_metadata, baseline="0001", head="0002", lock_id=7011920)


def histories(engine: Engine, audit_engine: Engine | None = None) -> list[tuple[str, Migrations, Engine]]:
    """(name, history, the engine of its database): the service tables, then the audit trail's."""
    from audit.store import MIGRATIONS as AUDIT

    return [("service", SERVICE, engine), ("audit", AUDIT, audit_engine or engine)]


def check(engine: Engine, audit_engine: Engine | None = None) -> None:
    """At start: create new databases at the newest revisions; refuse an outdated, unknown or
    unversioned one with what to do (see the module docstring)."""
    for what, history, db in histories(engine, audit_engine):
        with db.connect() as conn:
            if history.revision(conn) == history.head:
                continue
        found = history.state(db)
        if found.empty:
            _upgrade(history, db)
            continue
        if found.current is not None and found.current not in history.known():
            raise SchemaError(f"the {what} database schema is at revision {found.current}, which this medseg does "
                              f"not know (it needs {found.head}): it was written by a newer medseg",
                              code="db.newer_schema")
        at = f"revision {found.current}" if found.current else "a version from before schema migrations"
        raise SchemaError(f"the {what} database schema is at {at}; this medseg needs revision {found.head}: back it up "
                          "(`medseg backup DIR`), stop every medseg process using it, then run `medseg db upgrade`",
                          code="db.outdated_schema")


def upgrade(engine: Engine, audit_engine: Engine | None = None) -> dict[str, tuple[str | None, str]]:
    """Both histories to their newest revisions: {"service"|"audit": (from, to)}."""
    from audit.store import legacy_columns

    out = {}
    for what, history, db in histories(engine, audit_engine):
        before = history.state(db).current
        after = _upgrade(history, db, legacy_columns if what == "audit" else None)
        out[what] = (before, after.current)
    return out


def _upgrade(history: Migrations, db: Engine, before_stamp=None) -> SchemaState:
    try:
        return history.upgrade(db, before_stamp)
    except AuditSchemaError as exc:
        raise SchemaError(exc.message, code=exc.code) from None


def state(engine: Engine) -> SchemaState:
    """The service tables' schema state."""
    return SERVICE.state(engine)


def head() -> str:
    """The newest service revision in migrations/versions (tests compare it with ``SERVICE.head``)."""
    return SERVICE.script_head()
