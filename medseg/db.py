"""Database engine: SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL) for scale-out."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def make_engine(url: str) -> Engine:
    """An engine with the pragmas the embedded default needs.

    SQLite: WAL (readers never block the writer), ``synchronous=FULL`` (a committed job
    state survives power loss, not only a process crash) and a busy timeout so the
    SCP threads, the worker and the API can share the file.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def init_db(engine: Engine) -> None:
    import medseg.jobs  # noqa: F401  (registers the tables)

    Base.metadata.create_all(engine)
