"""The model registry: versions, the active one and its history; rollback (the CLI's, audited)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from medseg.app import operations
from medseg.app.api.deps import MlEngineer, Reader, ServiceDep

router = APIRouter(prefix="/models", tags=["models"])


class RollbackRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    to: str | None = None
    reprocess: bool = False


@router.get("")
def models(service: ServiceDep, caller: Reader) -> dict:
    """The registry: versions in the store, the active one, and how it got there."""
    name = service.context.default_model_name
    return {"name": name, "active": service.registry.active(name), "versions": service.registry.versions(name),
            "history": [h.as_dict() for h in service.registry.history(name)]}


@router.post("/{name}/rollback")
def rollback_model(name: str, body: RollbackRequest, service: ServiceDep, caller: MlEngineer) -> dict:
    """The CLI's rollback (gate, switch, affected studies, worklist, optional reprocess)."""
    report = operations.rollback(service.registry, service.jobs, service.events, name, to=body.to, actor=caller.actor,
                                 reason=body.reason, reprocess=body.reprocess, alerts=service.monitor.alerts)
    return report.as_dict()
