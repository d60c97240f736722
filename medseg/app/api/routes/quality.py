"""Quality monitoring: ``POST /reviews``, ``GET /reviews``, ``GET /monitoring/summary``, ``GET /alerts``,
and the re-review ``GET /worklist``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Optional

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile

from medseg.app.api.deps import (
    MODEL_REF_PATTERN,
    SINCE_PATTERN,
    UID_PATTERN,
    Radiologist,
    Reader,
    ServiceDep,
    check_uid,
)
from medseg.app.api.errors import Problem
from medseg.app.api.schemas import (
    CONFLICT,
    NOT_FOUND,
    Alerts,
    MonitoringSummary,
    ReviewOutcome,
    Reviews,
    Worklist,
    problem_response,
)
from medseg.quality.alerts import payload
from medseg.quality.report import model_ref, parse_since, summary

router = APIRouter(tags=["quality"])
MAX_MASK_BYTES = 512 * 1024 * 1024


@router.post("/reviews", status_code=202, responses={**NOT_FOUND, **CONFLICT, 413: problem_response("the mask is too large")})
def submit_review(service: ServiceDep, caller: Radiologist, response: Response,
                  study_uid: str = Form(..., pattern=UID_PATTERN, max_length=64), accepted: bool = Form(False),
                  reviewer: str = Form("", max_length=64),
                  series_uid: Optional[str] = Form(None, pattern=UID_PATTERN, max_length=64),
                  mask: Optional[UploadFile] = File(None)) -> ReviewOutcome:
    """A radiologist's review: the corrected mask (DICOM SEG or NIfTI on the source grid) or
    ``accepted=true`` (no correction). Stored at once (202, status ``received``, ``Location`` the
    review); the service scores it and evaluates the SLOs moments later: ``GET /reviews/{id}``
    then says ``scored`` (with the scores) or ``rejected`` (why, e.g. a mask off the source grid)."""
    check_uid(study_uid, "study_uid")
    check_uid(series_uid or None, "series_uid")
    data = mask.file.read(MAX_MASK_BYTES + 1) if mask is not None else None
    if data is not None and len(data) > MAX_MASK_BYTES:
        raise Problem(413, "Mask too large", f"the mask exceeds {MAX_MASK_BYTES // 2**20} MiB")
    outcome = service.reviews.submit(study_uid, mask=data or None, accepted=accepted, door="api",
                                     submitted_by=caller.actor, reviewer=reviewer, series_uid=series_uid)
    response.headers["Location"] = f"/reviews/{outcome.review.id}"
    return {"review": outcome.review.as_dict(), "slos": []}


@router.get("/reviews/{review_id}", responses=NOT_FOUND)
def review(service: ServiceDep, caller: Reader, review_id: int = Path(..., ge=1, le=2**31 - 1)) -> ReviewOutcome:
    """One review: ``received``/``scoring`` (waiting), ``scored`` with its scores and the SLO states
    of its model now, ``rejected`` with the reason in ``note``, or ``unmatched``."""
    row = service.monitor.store.review(review_id)
    if row is None:
        raise Problem(404, "Not found", f"no review {review_id}")
    slos = service.monitor.slo_status(row.model)[1] if row.status == "scored" else []
    return {"review": row.as_dict(), "slos": [s.as_dict() for s in slos]}


@router.get("/reviews")
def reviews(service: ServiceDep, caller: Reader, model: Optional[str] = Query(None, pattern=MODEL_REF_PATTERN),
            status: str = Query("scored", pattern="^(received|scoring|scored|rejected|unmatched)$"), limit: int = Query(100, ge=1, le=1000)) -> Reviews:
    rows = service.monitor.store.reviews(model=model_ref(model), status=status, limit=limit)
    return {"reviews": [r.as_dict() for r in rows]}


@router.get("/monitoring/summary")
def monitoring_summary(service: ServiceDep, caller: Reader,
                       model: Optional[str] = Query(None, pattern=MODEL_REF_PATTERN),
                       since: Annotated[dt.datetime, Query()] | Annotated[str, Query(pattern=SINCE_PATTERN)] | None = Query(
                           None, description="7d, 24h, or a date-time (UTC)")) -> MonitoringSummary:
    """Windows with confidence intervals, SLO states and burn rates, drift, alerts (as the CLI report)."""
    try:
        start = parse_since(since if since is None or isinstance(since, str) else since.isoformat())
    except ValueError as exc:
        raise Problem(400, "Invalid filter", str(exc)) from None
    return summary(service.monitor, model_ref(model), start)


@router.get("/alerts")
def alerts(service: ServiceDep, caller: Reader, state: Optional[str] = Query(None, pattern="^(firing|resolved)$")) -> Alerts:
    return {"alerts": [payload(a) for a in service.monitor.store.alerts(state)]}


@router.get("/worklist")
def worklist(service: ServiceDep, caller: Radiologist) -> Worklist:
    """Studies waiting for re-review (after a rollback)."""
    return {"items": [i.as_dict() for i in service.context.worklist.open_items()]}
