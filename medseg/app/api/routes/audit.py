"""The audit trail: events by filter, one study's timeline, the chain head. Every read is audited."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import ValidationError

from audit.query import AuditFilter, query, timeline
from medseg.app.api.deps import AuditorRole, ServiceDep, check_uid
from medseg.app.api.errors import Problem, first_error
from medseg.app.serve import Service

router = APIRouter(prefix="/audit", tags=["audit"])


def _audit_read(service: Service, actor: str, what: str, **filters) -> None:
    """Every read of audit data is itself audited (who, what filter). Fails closed."""
    service.events("audit.read", actor=actor, what=what, filter={k: v for k, v in filters.items() if v is not None})


@router.get("")
def audit_events(service: ServiceDep, caller: AuditorRole, study: str | None = None, series: str | None = None,
                 model: str | None = None, action: str | None = None, actor: str | None = None,
                 outcome: str | None = None, job_id: int | None = None, since: str | None = None,
                 until: str | None = None, limit: int = Query(100, ge=1, le=1000),
                 offset: int = Query(0, ge=0)) -> dict:
    try:
        f = AuditFilter(study_uid=study, series_uid=series, model=model, action=action, actor=actor,
                        outcome=outcome, job_id=job_id, since=since, until=until, limit=limit, offset=offset)
        _audit_read(service, caller.actor, "events", **f.describe())
        rows = query(service.audit_log, f)
    except (ValidationError, ValueError) as exc:
        raise Problem(400, "Invalid filter", first_error(exc)) from None
    return {"events": [e.as_dict() for e in rows], "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(rows) == limit else None}


@router.get("/studies/{study_uid}/timeline")
def audit_timeline(study_uid: str, service: ServiceDep, caller: AuditorRole) -> dict:
    check_uid(study_uid, "study_uid")
    _audit_read(service, caller.actor, "timeline", study_uid=study_uid)
    rows = timeline(service.audit_log, study_uid)
    if not rows:
        raise Problem(404, "Study not found", "the audit trail has no event for this study")
    return {"study_uid": study_uid, "events": [e.as_dict() for e in rows]}


@router.get("/head")
def audit_head(service: ServiceDep, caller: AuditorRole) -> dict:
    """The chain head: record it elsewhere (an anchor) to make truncation of the tail detectable."""
    seq, digest = service.audit_log.head()
    return {"seq": seq, "hash": digest}
