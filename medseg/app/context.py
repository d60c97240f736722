"""The one wiring of the service's state: settings -> engine -> tables -> audit trail -> job store
and model registry. ``medseg serve``, every CLI command and the tests build it the same way.

``build_context(settings)`` connects the parts and does no I/O; ``prepare()`` then checks the
schema (creating a new database; refusing one that needs ``medseg db upgrade``) and creates what is
missing (the audit table, the registry's first active version). Neither starts a
thread or loads a model. The audit commands use the context without ``prepare()``, so that
reading or verifying a trail never writes to the database it examines.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from medseg.app.auditing import Auditor, auditor_for
from medseg.config import Settings
from medseg.db import make_engine
from medseg.jobs.store import JobStore

if TYPE_CHECKING:
    from medseg.app.auth.tokens import TokenStore
    from medseg.models.registry import Registry
    from medseg.models.shadow import ShadowStore
    from medseg.quality.intake import ReviewIntake
    from medseg.quality.monitor import QualityMonitor
    from medseg.quality.worklist import Worklist


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    auditor: Auditor
    jobs: JobStore

    # Each part below is built, and its module imported, when first used: a command that needs a
    # few of them (``medseg review submit`` stores one row) does not pay for the rest at start.
    @cached_property
    def registry(self) -> Registry:
        from medseg.models.registry import Registry

        return Registry(self.engine, self.settings.model_catalog(), self.auditor)

    @cached_property
    def monitor(self) -> QualityMonitor:
        """Quality monitoring wired to the rollback path (the SLO fallback policy)."""
        from medseg.app.operations import slo_fallback
        from medseg.quality.alerts import AlertManager
        from medseg.quality.monitor import QualityMonitor
        from medseg.quality.store import MonitoringStore

        store = MonitoringStore(self.engine)
        alerts = AlertManager(store, self.settings.monitoring, self.auditor)
        monitor = QualityMonitor(store, self.settings.monitoring, alerts)
        monitor.fallback = slo_fallback(self.registry, self.jobs, self.auditor, monitor.slo_status, alerts)
        monitor.is_active = lambda ref: self.registry.active(ref.split("/")[0]) == ref.split("/")[-1]
        return monitor

    @cached_property
    def reviews(self) -> ReviewIntake:
        """The review doors and the scorer (:mod:`medseg.quality.intake`)."""
        from medseg.quality.intake import ReviewIntake

        service = self.settings.service
        return ReviewIntake(self.jobs, service.spool_dir, service.reviews_dir, self.auditor, lambda: self.monitor)

    @property
    def tokens(self) -> TokenStore:
        from medseg.app.auth.tokens import TokenStore

        return TokenStore(self.engine, self.auditor)

    @property
    def worklist(self) -> Worklist:
        from medseg.quality.worklist import Worklist

        return Worklist(self.engine, self.auditor)

    @property
    def shadow(self) -> ShadowStore:
        from medseg.models.shadow import ShadowStore

        return ShadowStore(self.engine, self.auditor)

    def prepare(self) -> AppContext:
        """Check the schema (a new database is created at the newest revision, an outdated one
        refused: :mod:`medseg.app.schema`) and register the default model's first active version."""
        from medseg.app.schema import check

        check(self.engine, self.auditor.log.engine)
        self.auditor.log.create()
        self.auditor.start_anchors()
        self.registry.bootstrap(self.settings.default_model)
        return self

    @property
    def default_model_name(self) -> str:
        return self.settings.default_model.split("/")[0]


def build_context(settings: Settings, *, create_keys: bool = True) -> AppContext:
    engine = make_engine(settings.service.db_url())
    auditor = auditor_for(settings, engine, create_keys=create_keys)
    # job state and its events commit together when they share the database
    jobs = JobStore(engine, auditor, shared_transaction=auditor.log.engine is engine)
    return AppContext(settings, engine, auditor, jobs)

