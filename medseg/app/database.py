"""Every table of the service database, listed once (no registration by side-effect imports).

``init_db`` creates the missing ones; the audit trail's own table is created by
:meth:`audit.AuditLog.create` because it may live in another database.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from medseg.app.auth.tokens import ApiToken
from medseg.db import Base
from medseg.jobs.orm import Delivery, Job, SeriesRow
from medseg.models.orm import ModelState, RegistryHistory, ShadowResult
from medseg.quality.orm import Alert, Review, StudyFeatures, WorklistItem

TABLES = (SeriesRow, Job, Delivery, ModelState, RegistryHistory, ShadowResult, Review, StudyFeatures, Alert,
          WorklistItem, ApiToken)


def init_db(engine: Engine) -> None:
    Base.metadata.create_all(engine, tables=[t.__table__ for t in TABLES])
