"""The service database's shared pieces: the declarative ``Base`` every table module uses, the
engine (SQLite in WAL mode by default, any SQLAlchemy URL such as PostgreSQL for scale-out),
sessions, and the one clock the tables' timestamps come from.

Which tables exist is listed once, explicitly, in ``medseg.app.database``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session

from audit.db import make_engine

__all__ = ["Base", "make_engine", "plain", "session", "utcnow"]


class Base(DeclarativeBase):
    pass


def utcnow() -> dt.datetime:
    """Naive UTC, as the DateTime columns store it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def plain(value):
    """A column value as JSON: datetimes as ISO 8601 UTC with ``Z``."""
    return value.isoformat() + "Z" if isinstance(value, dt.datetime) else value


def session(engine: Engine) -> Session:
    """A session whose objects stay readable after commit (they are handed to callers)."""
    return Session(engine, expire_on_commit=False)
