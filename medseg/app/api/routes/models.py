"""The model registry: versions, the active one and its history; rollback (the CLI's, audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from medseg.app import operations
from medseg.app.api.deps import MlEngineer, Reader, ServiceDep
from medseg.app.api.schemas import CONFLICT, NOT_FOUND, Registry, RollbackReport
from medseg.models.manifest import ModelManifest

router = APIRouter(prefix="/models", tags=["models"])


class RollbackRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    to: str | None = Field(default=None, pattern=ModelManifest.model_fields["version"].metadata[0].pattern)
    reprocess: bool = False


@router.get("")
def models(service: ServiceDep, caller: Reader) -> Registry:
    """The registry: versions in the store, the active one, and how it got there."""
    name = service.context.default_model_name
    return {"name": name, "active": service.registry.active(name), "versions": service.registry.versions(name),
            "history": [h.as_dict() for h in service.registry.history(name)]}


@router.post("/{name}/rollback", responses={**CONFLICT, **NOT_FOUND})
def rollback_model(name: Annotated[str, Path(pattern=ModelManifest.model_fields["name"].metadata[0].pattern)],
                   body: RollbackRequest, service: ServiceDep, caller: MlEngineer) -> RollbackReport:
    """The CLI's rollback (gate, switch, affected studies, worklist, optional reprocess)."""
    report = operations.rollback(service.registry, service.jobs, service.events, name, to=body.to, actor=caller.actor,
                                 reason=body.reason, reprocess=body.reprocess, alerts=service.monitor.alerts)
    return report.as_dict()
