"""The HTTP API (FastAPI), built in ``create_app`` and started with the service through its lifespan.

Errors are RFC 9457 problem details (``application/problem+json``). Authentication and
roles come with a later issue; until then the API binds to loopback by default.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field, ValidationError

from audit.query import AuditFilter, query, timeline
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from medseg import __version__
from medseg.jobs.store import JobStore
from medseg.app.serve import Service
from medseg.core.uids import is_uid


class RollbackRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    to: str | None = None
    reprocess: bool = False


def _jobs(request: Request) -> JobStore:
    return request.app.state.service.jobs


Jobs = Annotated[JobStore, Depends(_jobs)]


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status, self.title, self.detail = status, title, detail


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc).splitlines()[0]


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        service.stop()

    app = FastAPI(title="medseg", version=__version__, lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return JSONResponse({"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.detail},
                            status_code=exc.status, media_type="application/problem+json")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/ready")
    def ready(request: Request):
        state = request.app.state.service.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/studies")
    def studies(jobs: Jobs, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
        return {"studies": jobs.studies(limit, offset), "limit": limit, "offset": offset}

    @app.get("/studies/{study_uid}")
    def study(study_uid: str, jobs: Jobs) -> dict:
        if not is_uid(study_uid):
            raise Problem(400, "Invalid UID", "study_uid must be a DICOM UID (digits and dots, at most 64 characters)")
        found = jobs.study(study_uid)
        if found is None:
            raise Problem(404, "Study not found", "no instance of this study has been received")
        return found

    def audit_read(request: Request, what: str, **filters) -> None:
        """Every read of audit data is itself audited (who, what filter). Fails closed."""
        client = request.client.host if request.client else "unknown"
        request.app.state.service.events("audit.read", actor=f"api:{client}", what=what,
                                         filter={k: v for k, v in filters.items() if v is not None})

    @app.get("/audit")
    def audit_events(request: Request, study: str | None = None, series: str | None = None, model: str | None = None,
                     action: str | None = None, actor: str | None = None, outcome: str | None = None,
                     job_id: int | None = None, since: str | None = None, until: str | None = None,
                     limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
        try:
            f = AuditFilter(study_uid=study, series_uid=series, model=model, action=action, actor=actor,
                            outcome=outcome, job_id=job_id, since=since, until=until, limit=limit, offset=offset)
            audit_read(request, "events", **f.describe())
            rows = query(request.app.state.service.audit_log, f)
        except (ValidationError, ValueError) as exc:
            raise Problem(400, "Invalid filter", _first_error(exc)) from None
        return {"events": [e.as_dict() for e in rows], "limit": limit, "offset": offset,
                "next_offset": offset + limit if len(rows) == limit else None}

    @app.get("/audit/studies/{study_uid}/timeline")
    def audit_timeline(study_uid: str, request: Request) -> dict:
        if not is_uid(study_uid):
            raise Problem(400, "Invalid UID", "study_uid must be a DICOM UID (digits and dots, at most 64 characters)")
        audit_read(request, "timeline", study_uid=study_uid)
        rows = timeline(request.app.state.service.audit_log, study_uid)
        if not rows:
            raise Problem(404, "Study not found", "the audit trail has no event for this study")
        return {"study_uid": study_uid, "events": [e.as_dict() for e in rows]}

    @app.get("/audit/head")
    def audit_head(request: Request) -> dict:
        """The chain head: record it elsewhere (an anchor) to make truncation of the tail detectable."""
        seq, digest = request.app.state.service.audit_log.head()
        return {"seq": seq, "hash": digest}

    @app.get("/models")
    def models(request: Request) -> dict:
        """The registry: versions in the store, the active one, and how it got there."""
        from medseg.models.registry import split_ref

        service = request.app.state.service
        name = split_ref(service.settings.default_model)[0]
        return {"name": name, "active": service.registry.active(name), "versions": service.registry.versions(name),
                "history": [h.as_dict() for h in service.registry.history(name)]}

    @app.post("/models/{name}/rollback")
    def rollback_model(name: str, body: RollbackRequest, request: Request) -> dict:
        """The CLI's rollback (gate, switch, affected studies, worklist, optional reprocess).
        Until authentication lands (a later issue) the API binds to loopback by default."""
        from medseg.app import operations as model_ops
        from medseg.models.registry import RegistryError

        service = request.app.state.service
        client = request.client.host if request.client else "unknown"
        try:
            report = model_ops.rollback(service.registry, service.jobs, service.events, name, to=body.to,
                                        actor=f"api:{client}", reason=body.reason, reprocess=body.reprocess)
        except RegistryError as exc:
            raise Problem(409 if exc.code in ("registry.gate_failed", "registry.no_previous") else 400,
                          "Rollback refused", exc.message) from None
        return report.as_dict()

    @app.get("/worklist")
    def worklist(request: Request) -> dict:
        """Studies waiting for re-review (after a rollback)."""
        from medseg.quality.worklist import Worklist

        return {"items": [i.as_dict() for i in Worklist(request.app.state.service.engine).open_items()]}

    from medseg.app.api.monitoring import add_routes

    add_routes(app, Problem)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
