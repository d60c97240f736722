"""The HTTP API (FastAPI), built in ``create_app`` and started with the service through its lifespan.

Routes live in :mod:`medseg.app.api.routes` (one router per area), their dependencies (the
service, the caller and their roles: :mod:`medseg.app.auth`) in :mod:`medseg.app.api.deps`, and
the one error boundary (problem details) in :mod:`medseg.app.api.errors`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from medseg import __version__
from medseg.app.api import errors, ui
from medseg.app.api.routes import audit, health, models, quality, studies, tokens
from medseg.app.api.schemas import COMMON_RESPONSES
from medseg.app.serve import Service


def create_app(service: Service, *, lifespan: bool = True) -> FastAPI:
    """The API of ``service``, which the app starts and stops (``lifespan=False``: a second app
    on a service already running, e.g. for an in-process API fuzzer)."""

    @asynccontextmanager
    async def run(app: FastAPI):
        service.start()
        yield
        service.stop()

    app = FastAPI(title="medseg", version=__version__, lifespan=run if lifespan else None, responses=COMMON_RESPONSES)
    app.state.service = service
    errors.install(app)
    for module in (health, studies, audit, models, quality, tokens):
        app.include_router(module.router)
    ui.install(app)  # the dashboard (/ui), on the same authentication and roles
    return app
