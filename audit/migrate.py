"""Alembic migrations of one set of tables with a version table of its own.

Two histories use it: the audit trail's tables (``audit/migrations``, version table
``audit_alembic_version``; :data:`audit.store.MIGRATIONS`) and the service's tables
(``medseg/app/migrations``, ``alembic_version``; ``medseg.app.schema``). They may share one
database or not (``[audit] database_url``); each only ever compares and migrates its own tables.

* :meth:`Migrations.revision` reads the version table with one query (no Alembic import): a
  process starting on an up-to-date database pays nothing more.
* :meth:`Migrations.upgrade` creates a new database at the newest revision, brings an older one
  to it, and records a database made before migrations as the ``baseline`` revision when it holds
  every table and column of that revision (else :class:`SchemaError`, naming what is missing).
  One at a time: SQLite's ``BEGIN IMMEDIATE`` (audit.db) serializes it, PostgreSQL takes an
  advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

from audit.exceptions import SchemaError

if TYPE_CHECKING:
    from alembic.config import Config


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the database's revision; None: unversioned (or empty)
    head: str  # the revision this code needs
    tables: frozenset[str]  # the history's tables present

    @property
    def empty(self) -> bool:
        return self.current is None and not self.tables

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class Migrations:
    location: Path  # the Alembic script directory (env.py, versions/)
    version_table: str
    metadata: Callable[[], MetaData]  # the tables the history owns, as the code declares them
    baseline: str  # the revision of a database made before migrations
    head: str  # the newest revision in versions/ (a test checks it): the one-query start check
    lock_id: int  # PostgreSQL advisory lock key

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> set[str]:
        return set(self.metadata().tables)

    def revision(self, conn: Connection) -> str | None:
        if not inspect(conn).has_table(self.version_table):
            return None
        return conn.execute(text(f"SELECT version_num FROM {self.version_table}")).scalar()

    def state(self, engine: Engine) -> SchemaState:
        with engine.connect() as conn:
            return self._state(conn)

    def _state(self, conn: Connection) -> SchemaState:
        return SchemaState(self.revision(conn), self.head, frozenset(set(inspect(conn).get_table_names()) & self.names()))

    def known(self) -> set[str]:
        """Every revision in versions/."""
        return {s.revision for s in self._script().walk_revisions()}

    def script_head(self) -> str:
        return self._script().get_current_head()

    # -- writing -------------------------------------------------------------------------------
    def upgrade(self, engine: Engine, before_stamp: Callable[[Connection], None] | None = None) -> SchemaState:
        """To the newest revision. ``before_stamp`` runs on a database from before migrations, before
        it is checked against the baseline (e.g. columns an older release added by hand)."""
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SELECT pg_advisory_xact_lock({self.lock_id})"))
            found = self._state(conn)
            if found.up_to_date:
                return found
            from alembic import command

            cfg = self.config(conn)
            if found.current is None and found.tables:
                if before_stamp is not None:
                    before_stamp(conn)
                self._check_baseline(conn)
                command.stamp(cfg, self.baseline)
            command.upgrade(cfg, "head")
            return self._state(conn)

    def _check_baseline(self, conn: Connection) -> None:
        inspector = inspect(conn)
        tables = set(inspector.get_table_names())
        missing = []
        for table, columns in self.baseline_columns().items():
            if table not in tables:
                missing.append(table)
                continue
            have = {c["name"] for c in inspector.get_columns(table)}
            missing += [f"{table}.{c}" for c in columns if c not in have]
        if missing:
            raise SchemaError(f"the database predates schema migrations and is older than their baseline (missing "
                              f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}): upgrade it with the "
                              "release that created it first", code="db.older_than_baseline")

    def baseline_columns(self) -> dict[str, list[str]]:
        """Table -> column names of the baseline revision, read off an in-memory database it is run
        on (no second list to keep)."""
        from alembic import command

        scratch = create_engine("sqlite://")
        with scratch.begin() as conn:
            command.upgrade(self.config(conn), self.baseline)
            inspector = inspect(conn)
            return {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()
                    if t in self.names()}

    def autogenerate(self, message: str, rev_id: str) -> Path:
        """For developers: the next revision's script, from the declared tables against a scratch
        SQLite database at the newest revision. Read it before committing, and move ``head``."""
        import tempfile

        from alembic import command

        with tempfile.TemporaryDirectory() as tmp:
            scratch = create_engine(f"sqlite:///{tmp}/scratch.db")
            with scratch.begin() as conn:
                cfg = self.config(conn)
                command.upgrade(cfg, "head")
                script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
            scratch.dispose()
        return Path(script.path)

    # -- Alembic -------------------------------------------------------------------------------
    def config(self, connection: Connection | None = None) -> Config:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(self.location))
        cfg.attributes.update(connection=connection, migrations=self)
        return cfg

    def _script(self):
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.config())

    def include_name(self, name: str | None, type_: str, parent_names: dict) -> bool:
        """Alembic's ``include_name``: only this history's tables are compared and migrated."""
        return type_ != "table" or name in self.names()


def run_env() -> None:
    """The body of each history's ``env.py``: the connection and the history come from
    :meth:`Migrations.config`."""
    from alembic import context

    migrations: Migrations = context.config.attributes["migrations"]
    context.configure(connection=context.config.attributes["connection"], target_metadata=migrations.metadata(),
                      render_as_batch=True, include_name=migrations.include_name,
                      version_table=migrations.version_table)
    with context.begin_transaction():
        context.run_migrations()
