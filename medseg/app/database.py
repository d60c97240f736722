"""Every table of the service database, listed once (no registration by side-effect imports).

Their schema is versioned by Alembic (:mod:`medseg.app.schema`, the migrations in
``medseg/app/migrations``); the audit trail's own tables are created by
:meth:`audit.AuditLog.create` because they may live in another database.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from medseg.app.auth.tokens import ApiToken
from medseg.jobs.orm import Delivery, Job, SeriesRow
from medseg.models.orm import ModelState, RegistryHistory, ShadowResult
from medseg.quality.orm import Alert, Review, StudyFeatures, WorklistItem

TABLES = (SeriesRow, Job, Delivery, ModelState, RegistryHistory, ShadowResult, Review, StudyFeatures, Alert,
          WorklistItem, ApiToken)


def metadata() -> MetaData:
    """The service tables' metadata (what the migrations must produce)."""
    out = MetaData()
    for table in TABLES:
        table.__table__.to_metadata(out)
    return out
