"""`medseg serve`: the DICOM node, study assembly, worker, delivery and HTTP API in one process,
or one role of them per process for scale-out (``--role``, README "Scaling out").

Composition only: every part is built here from :class:`Settings` on the shared
:func:`medseg.app.context.build_context` and started in order (recovery, SCP, assembly,
delivery, worker); the HTTP API starts and stops it through FastAPI's lifespan (nothing
happens at import time).

Roles (what :meth:`Service.start` starts):

| role | parts | needs |
|---|---|---|
| ``all`` (default) | everything; the worker threads poll the job table (no broker), or with ``[service] broker_url`` the dispatcher publishes to workers elsewhere | |
| ``node`` | DICOM node, study assembly, SEG delivery, review scoring, the dispatcher; HTTP for health, readiness and metrics | database, broker, shared data dir |
| ``api`` | the HTTP API, review scoring, alert webhooks | database, data dir (reviews) |
| ``worker`` | one job at a time from the broker (:func:`medseg.jobs.broker.run_worker`); no HTTP | database, broker, models, shared data dir |
"""

from __future__ import annotations

import hashlib
import logging

from audit.query import AuditFilter, query
from dicom_node.scu import send_file
from dicom_node.server import Node
from dicom_node.spool import Spool
from medseg.app.auth.authenticator import Authenticator
from medseg.app.context import build_context
from medseg.app.metrics import MonitoringCollector, ServiceMetrics
from medseg.app.operations import warn_unattainable
from medseg.config import Settings
from medseg.jobs.assembly import Assembly
from medseg.jobs.delivery import DeliveryLoop
from medseg.jobs.store import worker_id
from medseg.jobs.worker import Worker, WorkerHooks
from medseg.models.registry import split_ref
from medseg.quality.alerts import WebhookLoop
from medseg.quality.intake import ScoringLoop

log = logging.getLogger(__name__)


ROLES = ("all", "node", "api", "worker")


class Service:
    def __init__(self, settings: Settings, role: str = "all") -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if role != "all" and not settings.service.broker_url:
            from medseg.core.exceptions import ConfigError

            raise ConfigError(f"--role {role} needs a broker ([service] broker_url): the roles share jobs through it",
                              code="serve.no_broker")
        self.settings, self.role = settings, role
        self.distributed = bool(settings.service.broker_url)
        self.data_dir = settings.service.data_dir.resolve()
        self.context = ctx = build_context(settings)
        self.engine, self.events, self.jobs, self.registry = ctx.engine, ctx.auditor, ctx.jobs, ctx.registry
        self.audit_log = self.events.log
        self.tokens = ctx.tokens
        self.authenticator = Authenticator(settings.auth, self.tokens)
        self.metrics = ServiceMetrics(self.jobs.queue_depth)
        self.spool = Spool(settings.service.spool_dir, settings.node.disk_floor_mb)
        self.monitor = ctx.monitor
        self.metrics.registry.register(MonitoringCollector(self.monitor))
        self.reviews = ctx.reviews
        self.scoring = ScoringLoop(self.reviews)
        self.reviews.notify = self.scoring.wake  # each door wakes it: scored within moments, never in the request
        self.webhooks = WebhookLoop(self.monitor.alerts)
        self.assembly = Assembly(self.spool, self.jobs, settings, self.active_model, self.events,
                                 on_segmentations=self.reviews.receive_segs, released_instances=self.released_instances)
        self.node = Node(settings.node, self.spool, self.assembly, self.events, self.metrics, self.events.pseudonymize,
                         refuse=self.cannot_continue)
        self.delivery = DeliveryLoop(self.jobs, settings.node, self.metrics, send=send_file)
        hooks = WorkerHooks(route=self.delivery.route, delivered=self.delivery.wake, observe=self.monitor.observe_study)
        self.worker = Worker(self.jobs, settings, self.events, self.metrics, self.registry, ctx.shadow, hooks)
        self.dispatcher = None
        if self.distributed and role in ("all", "node"):
            from medseg.jobs.broker import Dispatcher, celery_app

            self.dispatcher = Dispatcher(self.jobs, celery_app(settings))
        self.dicom_port: int | None = None
        self.model_error: str | None = None

    def released_instances(self, study_uid: str, series_uid: str) -> int:
        """Instances of a series delivered by associations that were released normally (from the
        audit trail; events written before the abort rule recorded no ``ended`` and count as released)."""
        rows = query(self.audit_log, AuditFilter(study_uid=study_uid, series_uid=series_uid,
                                                 action="dicom.instances.received", limit=100_000))
        return sum(int(r.event.details.get("count", 0)) for r in rows
                   if r.event.details.get("ended", "released") == "released")

    def active_model(self) -> str:
        """name/version new jobs are queued on (the registry's active version of the default model)."""
        return self.registry.active_ref(self.settings.default_model)

    def has(self, part: str) -> bool:
        """Whether this process runs ``part``: node (DICOM, assembly, delivery), api (webhooks), or
        threads (the in-process worker: the embedded default only). Review scoring runs in every
        role but the worker."""
        return {"node": self.role in ("all", "node"), "api": self.role in ("all", "api"),
                "threads": self.role == "all" and not self.distributed}[part]

    def _begin(self) -> None:
        self.context.prepare()
        self.events.load_keys()  # before the first association (no race between first C-STOREs)
        config_hash = hashlib.sha256(self.settings.model_dump_json().encode()).hexdigest()
        self.events("config.loaded", sha256=config_hash, ae_title=self.settings.node.ae_title, role=self.role)

    def start(self) -> None:
        self._begin()
        if self.has("threads"):
            # the embedded worker's jobs that were running when it stopped; with a broker a running
            # job belongs to a worker elsewhere, and the broker redelivers it if that worker died
            self.jobs.recover()  # records service.recovered with the jobs it re-queued
        self.reviews.recover()
        if self.has("node"):
            pending = self.assembly.recover()
            if pending:
                self.events("service.recovered", series_pending=pending)
        if self.has("threads"):
            self.load_active()
            warn_unattainable(self.registry, self.events, self.settings.monitoring.slos, *split_ref(self.active_model()))
        if self.has("node"):
            self.dicom_port = self.node.start()
            self.assembly.start()
            self.delivery.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        if self.has("api"):
            self.webhooks.start()
        self.scoring.start()
        if self.has("threads"):
            self.worker.start()
        self.events("service.started", dicom_port=self.dicom_port, ae_title=self.settings.node.ae_title, role=self.role)
        self.events.anchor()

    def run_worker(self) -> None:
        """``--role worker``: take jobs from the broker until SIGTERM or Ctrl-C (the job in hand
        ends first), then stop as :meth:`stop` does."""
        from medseg.jobs.broker import run_worker

        self._begin()
        self.load_active()
        self.events("service.started", role=self.role, worker=worker_id())
        self.events.anchor()
        try:
            run_worker(self.settings, self.worker.execute)
        finally:
            self.events("service.stopped", role=self.role, worker=worker_id())
            self.events.anchor()
            self.engine.dispose()

    def load_active(self) -> None:
        """Load the active version now (start-up, and an API promotion or rollback before it answers),
        so /ready does not report 503 until the next study; the idle worker does the same for
        switches made elsewhere (the CLI, an SLO fallback). Only where jobs run: the node and API
        roles of a scale-out never load a model."""
        if not (self.has("threads") or self.role == "worker"):
            return
        active = self.active_model()
        try:
            self.worker.model(active)
            self.model_error = None
        except Exception as exc:  # noqa: BLE001 - jobs fall back per study; /ready says why
            self.model_error = getattr(exc, "message", type(exc).__name__)
            self.events("model.load_failed", outcome="failure", model=active, reason=self.model_error)

    def stop(self) -> None:
        self.node.stop()
        self.assembly.stop()
        self.worker.stop()
        self.delivery.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.webhooks.stop()
        self.scoring.stop()
        self.events("service.stopped", role=self.role)
        self.events.anchor()
        self.engine.dispose()

    def cannot_continue(self) -> str | None:
        """Why the service cannot go on (``/health`` 503, C-STOREs refused 0xA700), or None."""
        if self.worker.started and not self.worker.alive():
            return "a worker thread has stopped: studies would be accepted and never processed"
        return None

    def readiness(self) -> dict:
        # the database answers; free space under the spool is above the floor (below it every
        # C-STORE is refused with 0xA700); the in-process worker's model and threads where it runs
        checks = {"database": _passes(self.jobs.queue_depth)}
        if self.has("node"):
            checks.update(scp_listening=self.node.listening, spool_space=_passes(self.spool.check_space),
                          audit_writable=self.node.record.is_open())  # closed: C-STOREs answered 0xA700
        if self.has("threads"):
            checks.update(model_loaded=self.worker.has_model(self.active_model()), workers_running=self.worker.alive())
        return {"ready": all(checks.values()), "checks": checks, "model_error": self.model_error, "role": self.role}


def _passes(check) -> bool:
    try:
        check()
        return True
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return False
