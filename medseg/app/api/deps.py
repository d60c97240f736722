"""Dependencies of the routes, as named types: the running service, its job store, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dicom_node.uids import is_uid
from medseg.app.api.errors import Problem
from medseg.app.serve import Service
from medseg.jobs.store import JobStore


def _service(request: Request) -> Service:
    return request.app.state.service


def _jobs(request: Request) -> JobStore:
    return request.app.state.service.jobs


def _actor(request: Request) -> str:
    return f"api:{request.client.host if request.client else 'unknown'}"


ServiceDep = Annotated[Service, Depends(_service)]
JobsDep = Annotated[JobStore, Depends(_jobs)]
#: who the audit trail names for this request (authentication comes with a later issue)
ActorDep = Annotated[str, Depends(_actor)]


def check_uid(value: str | None, name: str) -> None:
    """A path or form value that must be a DICOM UID: 400 otherwise."""
    if value is not None and not is_uid(value):
        raise Problem(400, "Invalid UID", f"{name} must be a DICOM UID (digits and dots, at most 64 characters)")
