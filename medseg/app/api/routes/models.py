"""The model registry: versions, the active one and its history; the ml-engineer's reference,
promotion and rollback (the CLI's operations, audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from medseg.app import operations
from medseg.app.api.deps import MlEngineer, Reader, ServiceDep
from medseg.app.api.schemas import CONFLICT, NOT_FOUND, Promotion, Reference, Registry, RollbackReport
from medseg.models.manifest import ModelManifest

router = APIRouter(prefix="/models", tags=["models"])
Name = Annotated[str, Path(pattern=ModelManifest.model_fields["name"].metadata[0].pattern)]
Version = Annotated[str, Path(pattern=ModelManifest.model_fields["version"].metadata[0].pattern)]


class PromoteRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    #: required to promote a version whose own reviews breach an SLO: why (audited)
    override_breach: str | None = Field(default=None, min_length=1, max_length=500)


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


@router.post("/{name}/{version}/reference", responses={**CONFLICT, **NOT_FOUND})
def record_reference(name: Name, version: Version, service: ServiceDep, caller: MlEngineer) -> Reference:
    """Record the version's result on the reference phantom (refused, 409, when a lesion model finds
    none of its tumors)."""
    ref = operations.record_reference(service.registry, service.events, name, version, actor=caller.actor)
    return ref.model_dump(mode="json")


@router.post("/{name}/{version}/promote", responses={**CONFLICT, **NOT_FOUND})
def promote_model(name: Name, version: Version, body: PromoteRequest, service: ServiceDep,
                  caller: MlEngineer) -> Promotion:
    """Gate, then switch: new jobs use the version (409 if the gate refuses, or its reviews breach an
    SLO and no override is given)."""
    previous, new, gate = operations.promote(service.registry, service.events, name, version, actor=caller.actor,
                                             reason=body.reason, monitor=service.monitor,
                                             override_breach=body.override_breach)
    service.load_active()  # ready for the next study before answering
    return {"name": name, "previous": previous, "active": new, "gate": gate}


@router.post("/{name}/rollback", responses={**CONFLICT, **NOT_FOUND})
def rollback_model(name: Name, body: RollbackRequest, service: ServiceDep, caller: MlEngineer) -> RollbackReport:
    """The CLI's rollback (gate, switch, affected studies, worklist, optional reprocess)."""
    report = operations.rollback(service.registry, service.jobs, service.events, name, to=body.to, actor=caller.actor,
                                 reason=body.reason, reprocess=body.reprocess, alerts=service.monitor.alerts)
    service.load_active()
    return report.as_dict()
