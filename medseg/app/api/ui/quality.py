"""Quality: Dice, false-negative rate and lesion sensitivity over time per model version, with
the SLO objectives and a confidence band (the rolling window's interval, clipped to the metric's
range); drift monitors; alerts with their evidence. And the radiologist's re-review worklist,
closed by submitting a review through the API's own door (``POST /reviews``)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import RedirectResponse

from medseg.app.api.deps import SINCE_PATTERN, UID_PATTERN, ServiceDep
from medseg.app.api.errors import audit_refusal, problem_for
from medseg.app.api.routes import quality as api
from medseg.app.api.ui import charts
from medseg.app.api.ui.render import page
from medseg.app.api.ui.session import Radiologist, Viewer, check_csrf
from medseg.core.exceptions import MedsegError
from medseg.quality import slo
from medseg.quality.report import PLOTTED, parse_since, summary

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/quality")
def quality(request: Request, service: ServiceDep, caller: Viewer,
            since: str = Query("30d", pattern=SINCE_PATTERN)):
    start = parse_since(since)
    report = summary(service.monitor, None, start)
    window = service.settings.monitoring.window_reviews
    confidence = service.settings.monitoring.confidence
    panels = []
    for key, title in PLOTTED:
        panel = charts.Panel(title, ylim=(-0.02, 1.02), ylabel=title)
        for entry in report["models"]:
            reviews = list(reversed(service.monitor.store.reviews(model=entry["model"], since=start)))
            points = [(r.created_at, _value(r, key)) for r in reviews if _value(r, key) is not None]
            panel.lines.append((entry["model"], [t for t, _ in points], [v for _, v in points]))
            band = [(r.created_at, slo.estimate(reviews[max(0, i + 1 - window):i + 1], key, confidence))
                    for i, r in enumerate(reviews)]
            band = [(t, e) for t, e in band if e.low is not None]
            panel.bands.append(([t for t, _ in band], [e.low for _, e in band], [e.high for _, e in band]))
        panel.objectives = [(s["objective"], f"SLO {s['name']} ({'≤' if key == 'fn_rate' else '≥'} {s['objective']})")
                            for s in report["settings"]["slos"] if s["metric"] == key]
        panels.append(panel)
    return page(request, "quality.html", caller, report=report, since=since,
                chart=charts.svg(panels, span=(start, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))),
                alerts=report["alerts_recent"])


def _value(review, key: str):
    if key == "lesion_sensitivity":
        return review.detected_lesions / review.reference_lesions if review.reference_lesions else None
    return getattr(review, key)


@router.get("/worklist")
def worklist(request: Request, service: ServiceDep, caller: Radiologist,
             reviewed: int | None = Query(None, ge=1, le=2**31 - 1)):
    return _worklist(request, service, caller, reviewed=reviewed)


def _worklist(request: Request, service, caller, status_code: int = 200, **extra):
    return page(request, "worklist.html", caller, status_code=status_code, items=service.context.worklist.open_items(),
                recent=service.monitor.store.reviews(limit=10), **extra)


@router.post("/worklist/review")
def submit_review(request: Request, service: ServiceDep, caller: Radiologist,
                  study_uid: str = Form(..., pattern=UID_PATTERN, max_length=64),
                  series_uid: str = Form("", pattern=f"({UID_PATTERN})|^$", max_length=64),
                  accepted: bool = Form(False), reviewer: str = Form("", max_length=64),
                  mask: UploadFile | None = File(None), csrf: str = Form("")):
    check_csrf(request, csrf)
    if mask is not None and not mask.filename:
        mask = None  # the browser sends an empty part when no file was chosen
    try:
        outcome = api.submit_review(service, caller, Response(), study_uid=study_uid, accepted=accepted,
                                    reviewer=reviewer, series_uid=series_uid or None, mask=mask)
    except MedsegError as exc:
        problem = audit_refusal(request, problem_for(exc), code=exc.code)
        return _worklist(request, service, caller, problem.status, error=problem.detail)
    review = outcome["review"]
    return RedirectResponse(f"/ui/worklist?reviewed={int(review['id'])}", status_code=303)

