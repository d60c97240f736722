"""Quality monitoring: ``POST /reviews``, ``GET /reviews``, ``GET /monitoring/summary``, ``GET /alerts``,
and the re-review ``GET /worklist``."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, File, Form, Query, UploadFile

from medseg.app.api.deps import Radiologist, Reader, ServiceDep, check_uid
from medseg.app.api.errors import Problem
from medseg.quality.alerts import payload
from medseg.quality.report import model_ref, parse_since, summary

router = APIRouter(tags=["quality"])
MAX_MASK_BYTES = 512 * 1024 * 1024


@router.post("/reviews", status_code=201)
def submit_review(service: ServiceDep, caller: Radiologist, study_uid: str = Form(...), accepted: bool = Form(False),
                  reviewer: str = Form("", max_length=64), series_uid: Optional[str] = Form(None),
                  mask: Optional[UploadFile] = File(None)) -> dict:
    """A radiologist's review: the corrected mask (DICOM SEG or NIfTI on the source grid) or
    ``accepted=true`` (no correction). Returns the scores and the SLO states after it."""
    check_uid(study_uid, "study_uid")
    check_uid(series_uid or None, "series_uid")
    data = mask.file.read(MAX_MASK_BYTES + 1) if mask is not None else None
    if data is not None and len(data) > MAX_MASK_BYTES:
        raise Problem(413, "Mask too large", f"the mask exceeds {MAX_MASK_BYTES // 2**20} MiB")
    outcome = service.reviews.submit(study_uid, mask=data or None, accepted=accepted, door="api",
                                     submitted_by=caller.actor, reviewer=reviewer, series_uid=series_uid)
    return {"review": outcome.review.as_dict(), "slos": [s.as_dict() for s in outcome.slos]}


@router.get("/reviews")
def reviews(service: ServiceDep, caller: Reader, model: Optional[str] = None,
            status: str = Query("scored", pattern="^(scored|unmatched)$"), limit: int = Query(100, ge=1, le=1000)) -> dict:
    rows = service.monitor.store.reviews(model=model_ref(model), status=status, limit=limit)
    return {"reviews": [r.as_dict() for r in rows]}


@router.get("/monitoring/summary")
def monitoring_summary(service: ServiceDep, caller: Reader, model: Optional[str] = None, since: Optional[str] = None) -> dict:
    """Windows with confidence intervals, SLO states and burn rates, drift, alerts (as the CLI report)."""
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise Problem(400, "Invalid filter", str(exc)) from None
    return summary(service.monitor, model_ref(model), start)


@router.get("/alerts")
def alerts(service: ServiceDep, caller: Reader, state: Optional[str] = Query(None, pattern="^(firing|resolved)$")) -> dict:
    return {"alerts": [payload(a) for a in service.monitor.store.alerts(state)]}


@router.get("/worklist")
def worklist(service: ServiceDep, caller: Radiologist) -> dict:
    """Studies waiting for re-review (after a rollback)."""
    return {"items": [i.as_dict() for i in service.context.worklist.open_items()]}
