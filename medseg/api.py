"""The HTTP API (FastAPI), built in ``create_app`` and started with the service through its lifespan.

Errors are RFC 9457 problem details (``application/problem+json``). Authentication and
roles come with a later issue; until then the API binds to loopback by default.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from medseg import __version__
from medseg.jobs import JobStore
from medseg.serve import Service
from medseg.uids import is_uid


def _jobs(request: Request) -> JobStore:
    return request.app.state.service.jobs


Jobs = Annotated[JobStore, Depends(_jobs)]


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status, self.title, self.detail = status, title, detail


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

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
