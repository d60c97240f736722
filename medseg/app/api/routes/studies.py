"""Studies as the job table knows them: series, jobs and deliveries."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Query

from medseg.app.api.deps import MODEL_REF_PATTERN, JobsDep, Reader, StudyUID, check_uid, naive_utc
from medseg.app.api.errors import Problem
from medseg.app.api.schemas import NOT_FOUND, StudiesPage, Study
from medseg.jobs.states import JobState
from medseg.quality.report import model_ref

router = APIRouter(tags=["studies"])


@router.get("/studies")
def studies(jobs: JobsDep, caller: Reader, limit: int = Query(100, ge=1, le=1000),
            offset: int = Query(0, ge=0, le=2**31 - 1), state: JobState | None = None,
            model: str | None = Query(None, pattern=MODEL_REF_PATTERN, description="name:version"),
            calling_ae: str | None = Query(None, pattern=r"^[ -~]{1,16}$"),
            since: dt.datetime | None = Query(None, description="last change at or after (naive = UTC)"),
            until: dt.datetime | None = Query(None, description="last change before (naive = UTC)")) -> StudiesPage:
    """Studies, most recently changed first, filtered by a job's state, model version or calling AE
    and by the time of the last change."""
    return {"studies": jobs.studies(limit, offset, state=state, model=model_ref(model), calling_ae=calling_ae,
                                    since=naive_utc(since), until=naive_utc(until)),
            "limit": limit, "offset": offset}


@router.get("/studies/{study_uid}", responses=NOT_FOUND)
def study(study_uid: StudyUID, jobs: JobsDep, caller: Reader) -> Study:
    check_uid(study_uid, "study_uid")
    found = jobs.study(study_uid)
    if found is None:
        raise Problem(404, "Study not found", "no instance of this study has been received")
    return found
