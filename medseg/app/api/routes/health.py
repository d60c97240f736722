"""Liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from medseg import __version__
from medseg.app.api.deps import Reader, ServiceDep
from medseg.app.api.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "cannot continue"}})
def health(service: ServiceDep, caller: Reader):
    """Liveness: 503 when the service cannot continue and needs a restart (a worker thread is
    gone: studies would be accepted and never processed, so the node refuses them meanwhile)."""
    problem = service.cannot_continue()
    return JSONResponse({"status": "failing" if problem else "ok", "version": __version__, "problem": problem},
                        status_code=503 if problem else 200)


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready"}})
def ready(service: ServiceDep, caller: Reader):
    state = service.readiness()
    return JSONResponse(state, status_code=200 if state["ready"] else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(service: ServiceDep, caller: Reader) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
