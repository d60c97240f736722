"""The service database's schema version: Alembic migrations, ``medseg db upgrade``, and the check
every process makes before it uses the database.

* **A new database** (no medseg table) is created at the newest revision by the first process
  that opens it: the embedded default needs no command.
* **A database at an older revision** is refused with one line naming both revisions and the
  command that upgrades it (``medseg db upgrade``; back it up first with ``medseg backup``). A
  schema change is never applied behind an operator's back: with several processes sharing one
  PostgreSQL database (scale-out), one of them upgrading while the others run the old code would
  break those.
* **A database of a newer medseg** (a revision this code does not know) is refused too: it would
  be read with the wrong columns.
* **A database made before migrations existed** (tables created by ``create_all``, no
  ``alembic_version``; every release up to 0.1.0 of 2026-12-02) is the first revision,
  ``0001``, if every table and column of that revision is there: ``medseg db upgrade`` records it
  as such ("stamps" it), then upgrades. One that lacks any is refused with the missing names
  (a release older than the baseline: upgrade it with that release's medseg first).

The migrations live in ``medseg/app/migrations/versions`` (one file per revision, written with
``alembic revision --autogenerate`` against the ORM, read and corrected by hand); SQLite gets
``batch_alter_table`` operations, PostgreSQL plain ``ALTER TABLE``. The audit trail's tables are
not part of them: the ``audit`` package creates and extends its own tables
(:meth:`audit.AuditLog.create`), because they may live in another database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

from medseg.core.exceptions import MedsegError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
#: the revision of the schema every release before migrations created
BASELINE = "0001"
#: the newest revision in migrations/versions (tests/test_schema.py checks it against them): a
#: database at it passes the start check with one query, without importing Alembic (0.2 s of
#: every command)
HEAD = "0002"


class SchemaError(MedsegError):
    """The database's schema is not the one this code needs."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the database's revision; None: unversioned (or empty)
    head: str  # the revision this code needs
    tables: frozenset[str]  # medseg tables present

    @property
    def empty(self) -> bool:
        return self.current is None and not self.tables

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def ours(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic's ``include_name``: only the service tables are compared and migrated, never the
    audit trail's tables (which may share the database) nor Alembic's own."""
    return type_ != "table" or name in _names()


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def head() -> str:
    return _script().get_current_head()


def _names() -> set[str]:
    from medseg.app.database import TABLES

    return {t.__tablename__ for t in TABLES}


def state(engine: Engine) -> SchemaState:
    with engine.connect() as conn:
        return SchemaState(_revision(conn), head(), frozenset(set(inspect(conn).get_table_names()) & _names()))


def _revision(conn: Connection) -> str | None:
    """The database's revision (Alembic's version table), None if it has none."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check(engine: Engine) -> None:
    """At start: create a new database at the newest revision; refuse an outdated, unknown or
    unversioned one with what to do (see the module docstring)."""
    with engine.connect() as conn:
        if _revision(conn) == HEAD:
            return
    found = state(engine)
    if found.empty:
        upgrade(engine)
        return
    if found.up_to_date:
        return
    known = {s.revision for s in _script().walk_revisions()}
    if found.current is not None and found.current not in known:
        raise SchemaError(f"the database schema is at revision {found.current}, which this medseg does not know "
                          f"(it needs {found.head}): it was written by a newer medseg", code="db.newer_schema")
    at = f"revision {found.current}" if found.current else "a version from before schema migrations"
    raise SchemaError(f"the database schema is at {at}; this medseg needs revision {found.head}: back it up "
                      "(`medseg backup DIR`), stop every medseg process using it, then run `medseg db upgrade`",
                      code="db.outdated_schema")


def upgrade(engine: Engine) -> SchemaState:
    """Bring the database to the newest revision (an unversioned pre-migration database is first
    recorded as the baseline, after checking that it has the baseline's tables and columns)."""
    from alembic import command

    with engine.begin() as conn:
        # one migration at a time when several processes start on a new database together: SQLite's
        # BEGIN IMMEDIATE (medseg.db) already serializes them, PostgreSQL takes an advisory lock
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7011920)"))
        found = SchemaState(_revision(conn), HEAD, frozenset(set(inspect(conn).get_table_names()) & _names()))
        cfg = _config(conn)
        if found.current is None and found.tables:
            _check_baseline(conn)
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, "head")
    return state(engine)


def _check_baseline(conn: Connection) -> None:
    """Every table and column revision 0001 creates must be present in an unversioned database
    (what 0001 creates is read off an in-memory database it is run on: no second list to keep)."""
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    missing = []
    for table, columns in baseline_columns().items():
        if table not in tables:
            missing.append(table)
            continue
        have = {c["name"] for c in inspector.get_columns(table)}
        missing += [f"{table}.{c}" for c in columns if c not in have]
    if missing:
        raise SchemaError(f"the database predates schema migrations and is older than their baseline (missing "
                          f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}): upgrade it with the "
                          "medseg release that created it first", code="db.older_than_baseline")


def baseline_columns() -> dict[str, list[str]]:
    """Table -> column names of revision 0001."""
    from alembic import command

    scratch = create_engine("sqlite://")
    with scratch.begin() as conn:
        command.upgrade(_config(conn), BASELINE)
        inspector = inspect(conn)
        return {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()
                if t != "alembic_version"}


def autogenerate(message: str, rev_id: str) -> Path:
    """For developers: write the next revision's script by comparing the ORM with a scratch SQLite
    database at the newest revision (``python -c "from medseg.app.schema import autogenerate;
    autogenerate('jobs.x: why', '0003')"``). Read it before committing, and move :data:`HEAD`."""
    import tempfile

    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        scratch = create_engine(f"sqlite:///{tmp}/scratch.db")
        with scratch.begin() as conn:
            cfg = _config(conn)
            command.upgrade(cfg, "head")
            script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        scratch.dispose()
    return Path(script.path)
