"""The service database: SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL) for scale-out."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import DeclarativeBase

from audit.db import make_engine

__all__ = ["Base", "init_db", "make_engine"]


class Base(DeclarativeBase):
    pass


def init_db(engine: Engine) -> None:
    import medseg.jobs.store  # noqa: F401  (register the tables)
    import medseg.quality.store  # noqa: F401
    import medseg.models.registry  # noqa: F401
    import medseg.models.shadow  # noqa: F401
    import medseg.quality.worklist  # noqa: F401

    Base.metadata.create_all(engine)
