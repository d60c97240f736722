"""Studies: the list (paged, filtered) and one study (timeline, series decisions, results with
their lesion tables and overlay thumbnails)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path as FilePath

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from audit.query import describe, timeline
from medseg.app.api.deps import MODEL_REF_PATTERN, ServiceDep, StudyUID
from medseg.app.api.errors import Problem
from medseg.app.api.routes import studies as api
from medseg.app.api.ui.render import page
from medseg.app.api.ui.session import Viewer
from medseg.core.exceptions import MedsegError
from medseg.jobs.states import JobState

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE = 25
AE_PATTERN = r"^[ -~]{0,16}$"


@router.get("/studies")
def studies(request: Request, service: ServiceDep, caller: Viewer,
            state: str = Query("", pattern=f"^({'|'.join(s.value for s in JobState)})?$"),
            model: str = Query("", pattern=f"({MODEL_REF_PATTERN})|^$"), day: dt.date | None = None,
            calling_ae: str = Query("", pattern=AE_PATTERN), page_no: int = Query(1, ge=1, le=100_000, alias="page")):
    since = dt.datetime.combine(day, dt.time()) if day else None
    rows = api.studies(service.jobs, caller, limit=PAGE + 1, offset=(page_no - 1) * PAGE, state=state or None,
                       model=model or None, calling_ae=calling_ae.strip() or None, since=since,
                       until=since + dt.timedelta(days=1) if since else None)["studies"]
    filters = {"state": state, "model": model, "day": day.isoformat() if day else "", "calling_ae": calling_ae}
    return page(request, "studies.html", caller, studies=rows[:PAGE], filters=filters, page_no=page_no,
                more=len(rows) > PAGE, states=[s.value for s in JobState],
                versions=[f"{service.context.default_model_name}:{v}"
                          for v in service.registry.versions(service.context.default_model_name)])


@router.get("/studies/{study_uid}")
def study(request: Request, study_uid: StudyUID, service: ServiceDep, caller: Viewer):
    found = api.study(study_uid, service.jobs, caller)  # 404 when no instance of it was received
    # the timeline is read from the audit trail: the read itself is audited, as the API's is
    service.events("audit.read", actor=caller.actor, what="timeline", filter={"study_uid": study_uid}, door="ui")
    events = [{"at": e.ts, "action": e.event.action, "outcome": e.event.outcome, "line": describe(e)}
              for e in timeline(service.audit_log, study_uid)]
    results = [dict(job, **_result(service, job)) for job in found["jobs"]]
    return page(request, "study.html", caller, study=found, events=events, results=results)


def _result(service, job: dict) -> dict:
    """The result file's lesion table and the thumbnails to draw (none when the SEG is gone)."""
    if not job.get("seg_path"):
        return {"lesions": [], "thumbnails": [], "thumbnail_error": None}
    folder = FilePath(job["seg_path"]).parent
    try:
        lesions = json.loads((folder / "result.json").read_text()).get("lesions", [])
    except (OSError, ValueError):
        lesions = []
    try:
        from medseg.app.api.ui.overlays import plan

        thumbnails, error = plan(service.settings.service.spool_dir, service.jobs.by_id(job["id"])), None
    except MedsegError as exc:  # the source images or the SEG are no longer kept
        thumbnails, error = [], exc.message
    return {"lesions": lesions, "thumbnails": thumbnails, "thumbnail_error": error}


@router.get("/studies/{study_uid}/jobs/{job_id}/lesion{lesion}-slice{k}.png")
def thumbnail(study_uid: StudyUID, service: ServiceDep, caller: Viewer, job_id: int = Path(ge=1, le=2**31 - 1),
              lesion: int = Path(ge=1, le=1000), k: int = Path(ge=0, le=100_000)):
    from medseg.app.api.ui.overlays import render

    job = service.jobs.by_id(job_id)
    if job is None or job.study_uid != study_uid or not job.seg_path:
        raise Problem(404, "Not found", "no result of this study with that id")
    try:
        png = render(service.settings.service.spool_dir, job, lesion, k)
    except LookupError as exc:
        raise Problem(404, "Not found", str(exc)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
