"""Studies as the job table knows them: series, jobs and deliveries."""

from __future__ import annotations

from fastapi import APIRouter, Query

from medseg.app.api.deps import JobsDep, Reader, StudyUID, check_uid
from medseg.app.api.errors import Problem
from medseg.app.api.schemas import NOT_FOUND, StudiesPage, Study

router = APIRouter(tags=["studies"])


@router.get("/studies")
def studies(jobs: JobsDep, caller: Reader, limit: int = Query(100, ge=1, le=1000),
            offset: int = Query(0, ge=0, le=2**31 - 1)) -> StudiesPage:
    return {"studies": jobs.studies(limit, offset), "limit": limit, "offset": offset}


@router.get("/studies/{study_uid}", responses=NOT_FOUND)
def study(study_uid: StudyUID, jobs: JobsDep, caller: Reader) -> Study:
    check_uid(study_uid, "study_uid")
    found = jobs.study(study_uid)
    if found is None:
        raise Problem(404, "Study not found", "no instance of this study has been received")
    return found
