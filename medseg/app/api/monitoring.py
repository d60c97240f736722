"""HTTP routes of quality monitoring: ``POST /reviews``, ``GET /reviews``, ``GET /monitoring/summary``,
``GET /alerts``. Registered by :func:`medseg.app.api.main.create_app`; errors are problem details."""

from __future__ import annotations

from typing import Optional

from fastapi import FastAPI, File, Form, Query, Request, UploadFile

from medseg.core.uids import is_uid

#: review error code -> HTTP status
STATUS = {"review.no_result": 404, "review.no_source": 409, "review.ambiguous": 409, "review.geometry": 422,
          "review.unreadable": 422, "review.invalid": 400}
MAX_MASK_BYTES = 512 * 1024 * 1024


def add_routes(app: FastAPI, problem) -> None:
    @app.post("/reviews", status_code=201)
    def submit_review(request: Request, study_uid: str = Form(...), accepted: bool = Form(False),
                      reviewer: str = Form("", max_length=64), series_uid: Optional[str] = Form(None),
                      mask: Optional[UploadFile] = File(None)) -> dict:
        """A radiologist's review: the corrected mask (DICOM SEG or NIfTI on the source grid) or
        ``accepted=true`` (no correction). Returns the scores and the SLO states after it."""
        from medseg.quality.intake import ReviewError

        if not is_uid(study_uid) or (series_uid and not is_uid(series_uid)):
            raise problem(400, "Invalid UID", "study_uid/series_uid must be DICOM UIDs (digits and dots, <= 64)")
        data = mask.file.read(MAX_MASK_BYTES + 1) if mask is not None else None
        if data is not None and len(data) > MAX_MASK_BYTES:
            raise problem(413, "Mask too large", f"the mask exceeds {MAX_MASK_BYTES // 2**20} MiB")
        service = request.app.state.service
        client = request.client.host if request.client else "unknown"
        try:
            outcome = service.reviews.submit(study_uid, mask=data or None, accepted=accepted, door="api",
                                             submitted_by=f"api:{client}", reviewer=reviewer, series_uid=series_uid)
        except ReviewError as exc:
            raise problem(STATUS.get(exc.code, 400), "Review refused", f"{exc.message} [{exc.code}]") from None
        return {"review": outcome.review.as_dict(), "slos": [s.as_dict() for s in outcome.slos]}

    @app.get("/reviews")
    def reviews(request: Request, model: Optional[str] = None, status: str = Query("scored", pattern="^(scored|unmatched)$"),
                limit: int = Query(100, ge=1, le=1000)) -> dict:
        from medseg.quality.report import model_ref

        rows = request.app.state.service.monitor.store.reviews(model=model_ref(model), status=status, limit=limit)
        return {"reviews": [r.as_dict() for r in rows]}

    @app.get("/monitoring/summary")
    def monitoring_summary(request: Request, model: Optional[str] = None, since: Optional[str] = None) -> dict:
        """Windows with confidence intervals, SLO states and burn rates, drift, alerts (as the CLI report)."""
        from medseg.quality.report import model_ref, parse_since, summary

        try:
            start = parse_since(since)
        except ValueError as exc:
            raise problem(400, "Invalid filter", str(exc)) from None
        return summary(request.app.state.service.monitor, model_ref(model), start)

    @app.get("/alerts")
    def alerts(request: Request, state: Optional[str] = Query(None, pattern="^(firing|resolved)$")) -> dict:
        from medseg.quality.alerts import payload

        return {"alerts": [payload(a) for a in request.app.state.service.monitor.store.alerts(state)]}
