"""Dependencies of the routes, as named types: the running service, its job store, the caller.

The caller is a :class:`~medseg.app.auth.roles.Principal` that holds one of the route's roles
(``Reader``, ``Radiologist``, ``MlEngineer``, ``AuditorRole``, ``Admin``); ``require`` answers
401 (no valid token) or 403 (no such role) and audits the refusal (``api.refused``). Open routes
(``[auth] open_routes``) and a service with ``[auth] enabled = false`` (loopback only) get an
anonymous ``api:<client address>`` principal holding every role.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dicom_node.uids import is_uid
from medseg.app.api.errors import Problem, audit_refusal
from medseg.app.auth.roles import READERS, Principal, Role
from medseg.app.serve import Service
from medseg.jobs.store import JobStore

_bearer = HTTPBearer(auto_error=False, description="an API token (medseg tokens create) or an OIDC JWT")


def _service(request: Request) -> Service:
    return request.app.state.service


def _jobs(request: Request) -> JobStore:
    return request.app.state.service.jobs


def anonymous(request: Request) -> str:
    return f"api:{request.client.host if request.client else 'unknown'}"


def principal_for(request: Request, token: str | None) -> Principal | None:
    """Who holds ``token`` (an API token or an OIDC JWT), or None; every role, anonymously, where
    authentication is off (loopback only)."""
    service = request.app.state.service
    if not service.settings.auth.enabled:
        return Principal(anonymous(request), frozenset(Role))
    return service.authenticator.authenticate(token) if token else None


def require(*roles: Role):
    allowed = frozenset(roles)

    def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if request.url.path in request.app.state.service.settings.auth.open_routes:
            principal = Principal(anonymous(request), frozenset(Role))
        else:
            principal = principal_for(request, credentials.credentials if credentials else None)
            if principal is None:
                raise audit_refusal(request, Problem(
                    401, "Authentication required", "a valid bearer token is required (an API token or an OIDC JWT)",
                    headers={"WWW-Authenticate": 'Bearer realm="medseg"'}), actor=anonymous(request))
            if not principal.holds(allowed):
                raise audit_refusal(request, Problem(
                    403, "Role required", f"this needs the role {' or '.join(sorted(allowed))}"), actor=principal.actor)
        request.state.principal = principal
        return principal

    return caller


#: path and form values that are DICOM UIDs, as the OpenAPI document states them (dicom_node.uids)
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
StudyUID = Annotated[str, Path(pattern=UID_PATTERN, max_length=64, description="StudyInstanceUID")]
#: a model version as filters name it: name:version (or name/version)
MODEL_REF_PATTERN = r"^[a-z0-9][a-z0-9-]{0,47}[:/][0-9]+\.[0-9]+\.[0-9]+([.-][A-Za-z0-9.]+)?$"
#: a window start: 7d, 24h (relative), or a date-time
SINCE_PATTERN = r"^([0-9]{1,5}[mhdw]|today|yesterday)$"  # audit.query.parse_time
ServiceDep = Annotated[Service, Depends(_service)]
JobsDep = Annotated[JobStore, Depends(_jobs)]
Reader = Annotated[Principal, Depends(require(*READERS))]
Radiologist = Annotated[Principal, Depends(require(Role.RADIOLOGIST))]
MlEngineer = Annotated[Principal, Depends(require(Role.ML_ENGINEER))]
AuditorRole = Annotated[Principal, Depends(require(Role.AUDITOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def naive_utc(when: dt.datetime | None) -> dt.datetime | None:
    """A query's date-time as the tables store it: naive UTC (a naive one is taken as UTC)."""
    if when is None or when.tzinfo is None:
        return when
    try:
        return when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except OverflowError:  # e.g. 0001-01-01T00:00+13:00 is before year 1 in UTC
        raise Problem(400, "Invalid filter", "date-time out of range") from None


def check_uid(value: str | None, name: str) -> None:
    """A path or form value that must be a DICOM UID: 400 otherwise."""
    if value is not None and not is_uid(value):
        raise Problem(400, "Invalid UID", f"{name} must be a DICOM UID (digits and dots, at most 64 characters)")
