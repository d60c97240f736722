"""The audit trail: events by filter, one study's timeline, the chain head. Every read is audited."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import ValidationError

from audit.query import AuditFilter, query, timeline
from medseg.app.api.deps import (
    MODEL_REF_PATTERN,
    UID_PATTERN,
    AuditorRole,
    ServiceDep,
    StudyUID,
    check_uid,
    naive_utc,
)
from medseg.app.api.errors import Problem, first_error
from medseg.app.api.schemas import NOT_FOUND, AuditHead, AuditPage, Timeline
from medseg.app.serve import Service

router = APIRouter(prefix="/audit", tags=["audit"])


def utc_iso(when: dt.datetime | None) -> str | None:
    """A query's date-time (naive = UTC) as the filter takes it."""
    utc = naive_utc(when)
    return None if utc is None else utc.isoformat(timespec="microseconds") + "Z"


def _audit_read(service: Service, who: str, what: str, filters: dict) -> None:
    """Every read of audit data is itself audited (who, what filter). Fails closed."""
    service.events("audit.read", actor=who, what=what, filter={k: v for k, v in filters.items() if v is not None})


@router.get("")
def audit_events(service: ServiceDep, caller: AuditorRole,
                 study: str | None = Query(None, pattern=UID_PATTERN, max_length=64),
                 series: str | None = Query(None, pattern=UID_PATTERN, max_length=64),
                 model: str | None = Query(None, pattern=MODEL_REF_PATTERN, description="name:version"),
                 action: str | None = Query(None, pattern=r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$", description="exact, or a prefix: job.*"),
                 actor: str | None = Query(None, max_length=128),
                 outcome: Literal["success", "failure"] | None = None, job_id: int | None = Query(None, ge=0, le=2**31 - 1), since: dt.datetime | None = None,
                 until: dt.datetime | None = None, limit: int = Query(100, ge=1, le=1000),
                 offset: int = Query(0, ge=0, le=2**31 - 1)) -> AuditPage:
    try:
        f = AuditFilter(study_uid=study, series_uid=series, model=model, action=action, actor=actor,
                        outcome=outcome, job_id=job_id, since=utc_iso(since), until=utc_iso(until), limit=limit,
                        offset=offset)
        _audit_read(service, caller.actor, "events", f.describe())
        rows = query(service.audit_log, f)
    except (ValidationError, ValueError) as exc:
        raise Problem(400, "Invalid filter", first_error(exc)) from None
    return {"events": [e.as_dict() for e in rows], "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(rows) == limit else None}


@router.get("/studies/{study_uid}/timeline", responses=NOT_FOUND)
def audit_timeline(study_uid: StudyUID, service: ServiceDep, caller: AuditorRole) -> Timeline:
    check_uid(study_uid, "study_uid")
    _audit_read(service, caller.actor, "timeline", {"study_uid": study_uid})
    rows = timeline(service.audit_log, study_uid)
    if not rows:
        raise Problem(404, "Study not found", "the audit trail has no event for this study")
    return {"study_uid": study_uid, "events": [e.as_dict() for e in rows]}


@router.get("/head")
def audit_head(service: ServiceDep, caller: AuditorRole) -> AuditHead:
    """The chain head: record it elsewhere (an anchor) to make truncation of the tail detectable."""
    seq, digest = service.audit_log.head()
    return {"seq": seq, "hash": digest}
