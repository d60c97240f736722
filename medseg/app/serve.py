"""`medseg serve`: the DICOM node, study assembly, worker, delivery and HTTP API in one process.

Composition only: every part is built here from :class:`Settings` and started in
order (database, recovery, SCP, assembly, delivery, worker); the HTTP API starts and
stops it through FastAPI's lifespan (STYLE.md #3: nothing happens at import time).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from medseg.jobs.assembly import Assembly
from dicom_node.scu import DeliveryLoop
from dicom_node.server import Node
from dicom_node.spool import Spool
from medseg.config import Settings
from medseg.app.auditing import auditor_for
from medseg.db import init_db, make_engine
from medseg.jobs.store import JobStore
from medseg.app.metrics import ServiceMetrics
from medseg.app.operations import slo_fallback
from medseg.quality.alerts import AlertManager, WebhookLoop
from medseg.quality.monitor import QualityMonitor
from medseg.quality.prom import MonitoringCollector
from medseg.quality.store import MonitoringStore
from medseg.quality.intake import ReviewIntake
from medseg.models.registry import Registry
from medseg.models.shadow import ShadowStore
from medseg.jobs.worker import Worker

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = Path(settings.service.data_dir).resolve()
        self.data_dir = data
        self.engine = make_engine(settings.service.db_url())
        self.events = auditor_for(settings, self.engine)
        self.audit_log = self.events.log
        # job state and its events commit together when they share the database
        self.jobs = JobStore(self.engine, self.events, shared_transaction=self.audit_log.engine is self.engine)
        self.metrics = ServiceMetrics(self.jobs.queue_depth)
        self.spool = Spool(data / "spool", settings.node.disk_floor_mb)
        self.registry = Registry(self.engine, settings.models_root, audit=self.events)
        self.monitor = build_monitor(settings, self.registry, self.jobs, self.events)
        self.metrics.registry.register(MonitoringCollector(self.monitor))
        self.reviews = ReviewIntake(self.jobs, self.spool.root, data / "reviews", self.events, self.monitor)
        self.webhooks = WebhookLoop(self.monitor.alerts)
        self.assembly = Assembly(self.spool, self.jobs, settings, lambda: self.registry.active_ref(settings.default_model),
                                 self.events, on_segmentations=self.reviews.receive_segs)
        self.node = Node(settings.node, self.spool, self.assembly, self.events, self.metrics, self.events.pseudonymize)
        self.delivery = DeliveryLoop(self.jobs, settings.node, self.metrics)
        self.worker = Worker(self.jobs, settings, self.spool.root, data / "results", self.events, self.metrics,
                             route=self.delivery.route, delivered=self.delivery.wake,
                             fallback_chain=self.registry.fallback_chain, shadow_of=self.registry.shadow,
                             shadow_store=ShadowStore(self.engine, self.events), observe=self.monitor.observe_study)
        self.dicom_port: int | None = None
        self.model_error: str | None = None

    def start(self) -> None:
        init_db(self.engine)
        self.audit_log.create()
        self.registry.bootstrap(self.settings.default_model)
        config_hash = hashlib.sha256(self.settings.model_dump_json().encode()).hexdigest()
        self.events("config.loaded", sha256=config_hash, ae_title=self.settings.node.ae_title)
        self.jobs.recover()  # records service.recovered with the jobs it re-queued
        pending = self.assembly.recover()
        if pending:
            self.events("service.recovered", series_pending=pending)
        active = self.registry.active_ref(self.settings.default_model)
        try:
            self.worker.model(active)
        except Exception as exc:  # noqa: BLE001 - jobs fall back per study; /ready says why
            self.model_error = getattr(exc, "message", type(exc).__name__)
            self.events("model.load_failed", outcome="failure", model=active, reason=self.model_error)
        self.dicom_port = self.node.start()
        self.assembly.start()
        self.delivery.start()
        self.webhooks.start()
        self.worker.start()
        self.events("service.started", dicom_port=self.dicom_port, ae_title=self.settings.node.ae_title)
        self.events.anchor()

    def stop(self) -> None:
        self.node.stop()
        self.assembly.stop()
        self.worker.stop()
        self.delivery.stop()
        self.webhooks.stop()
        self.events("service.stopped")
        self.events.anchor()
        self.engine.dispose()

    def readiness(self) -> dict:
        checks = {"scp_listening": self.node.listening, "database": _db_ok(self.jobs),
                  "model_loaded": self.worker.has_model(self.registry.active_ref(self.settings.default_model))}
        return {"ready": all(checks.values()), "checks": checks, "model_error": self.model_error}


def build_monitor(settings: Settings, registry: Registry, jobs: JobStore, events) -> QualityMonitor:
    """Quality monitoring wired to the rollback path (shared by the service and the CLI)."""
    store = MonitoringStore(jobs.engine)
    alerts = AlertManager(store, settings.monitoring, events)
    monitor = QualityMonitor(store, settings.monitoring, alerts)
    monitor.fallback = slo_fallback(registry, jobs, events, monitor.slo_status)
    return monitor


def _db_ok(jobs: JobStore) -> bool:
    try:
        jobs.queue_depth()
        return True
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return False
