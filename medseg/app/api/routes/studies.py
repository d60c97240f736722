"""Studies as the job table knows them: series, jobs and deliveries."""

from __future__ import annotations

from fastapi import APIRouter, Query

from medseg.app.api.deps import JobsDep, Reader, check_uid
from medseg.app.api.errors import Problem

router = APIRouter(tags=["studies"])


@router.get("/studies")
def studies(jobs: JobsDep, caller: Reader, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
    return {"studies": jobs.studies(limit, offset), "limit": limit, "offset": offset}


@router.get("/studies/{study_uid}")
def study(study_uid: str, jobs: JobsDep, caller: Reader) -> dict:
    check_uid(study_uid, "study_uid")
    found = jobs.study(study_uid)
    if found is None:
        raise Problem(404, "Study not found", "no instance of this study has been received")
    return found
