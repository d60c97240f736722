"""Read models of the job table: what the API, the CLI, review intake and rollback ask of it.

Nothing here writes; :class:`medseg.jobs.store.JobStore` adds the audited state changes.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from medseg.db import plain, session, utcnow
from medseg.jobs.orm import Delivery, Job, SeriesRow
from medseg.jobs.states import DeliveryState, JobState, SeriesState


class JobQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        return session(self.engine)

    # -- study assembly ------------------------------------------------------------------------
    def receiving_series(self) -> list[SeriesRow]:
        with self.session() as s:
            return list(s.scalars(select(SeriesRow).where(SeriesRow.state == SeriesState.RECEIVING)))

    def known_series(self) -> set[tuple[str, str]]:
        with self.session() as s:
            return {(r.study_uid, r.series_uid) for r in s.scalars(select(SeriesRow))}

    # -- the queue and deliveries --------------------------------------------------------------
    def queued_attempts(self) -> list[tuple[int, int, str]]:
        """(job id, attempts so far, series UID) of every queued job, oldest first: what the broker
        dispatcher publishes."""
        with self.session() as s:
            return [tuple(row) for row in s.execute(select(Job.id, Job.attempts, Job.series_uid)
                                                    .where(Job.state == JobState.QUEUED).order_by(Job.id))]

    def queue_depth(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.QUEUED)) or 0

    def due_deliveries(self, now: dt.datetime | None = None) -> list[tuple[Delivery, Job]]:
        with self.session() as s:
            rows = s.execute(select(Delivery, Job).join(Job, Job.id == Delivery.job_id).where(
                Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= (now or utcnow()),
                Job.state == JobState.DELIVERING).order_by(Delivery.next_attempt_at))
            return [(d, j) for d, j in rows]

    # -- studies ---------------------------------------------------------------------------------
    def studies(self, limit: int = 100, offset: int = 0, *, state: str | None = None, model: str | None = None,
                since: dt.datetime | None = None, until: dt.datetime | None = None,
                calling_ae: str | None = None) -> list[dict]:
        """Studies, most recently changed first; the filters select studies having a job in
        ``state``, on ``model`` (name/version, as queued or as used), changed in [since, until),
        or sent by ``calling_ae``."""
        conditions = []
        if state:
            conditions.append(Job.state == state)
        if model:
            conditions.append((Job.model == model) | (Job.model_used == model))
        if calling_ae:
            conditions.append(Job.calling_ae == calling_ae)
        chosen = select(Job.study_uid).where(*conditions).distinct() if conditions else None
        with self.session() as s:
            q = select(Job.study_uid, func.count(Job.id), func.max(Job.updated_at), func.min(Job.created_at))
            if chosen is not None:
                q = q.where(Job.study_uid.in_(chosen))
            q = q.group_by(Job.study_uid)
            if since is not None:
                q = q.having(func.max(Job.updated_at) >= since)
            if until is not None:
                q = q.having(func.max(Job.updated_at) < until)
            rows = s.execute(q.order_by(func.max(Job.updated_at).desc(), Job.study_uid).limit(limit).offset(offset))
            out = []
            for study_uid, count, updated, created in rows:
                jobs = list(s.execute(select(Job.state, Job.model_used, Job.model, Job.calling_ae, Job.result)
                                      .where(Job.study_uid == study_uid).order_by(Job.id)))
                found = [j.result.get("lesion_count") for j in jobs if j.result and j.state != JobState.SUPERSEDED]
                states = [j.state for j in jobs]
                out.append({"study_uid": study_uid, "jobs": count, "updated_at": plain(updated),
                            "received_at": plain(created),
                            "states": {st: states.count(st) for st in sorted(set(states))},
                            "models": sorted({j.model_used or j.model for j in jobs}),
                            "calling_aes": sorted({j.calling_ae for j in jobs if j.calling_ae}),
                            "lesions": found[-1] if found else None})
            return out

    def activity(self, since: dt.datetime) -> dict:
        """What the on-call overview shows: jobs by state now, and the jobs created or finished
        since ``since`` (turnaround, throughput, failures, fallbacks)."""
        with self.session() as s:
            by_state = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            recent = list(s.scalars(select(Job).where((Job.finished_at >= since) | (Job.created_at >= since))
                                    .order_by(Job.id)))
        return {"by_state": {state.value: by_state.get(state.value, 0) for state in JobState}, "recent": recent}

    def study(self, study_uid: str) -> dict | None:
        with self.session() as s:
            series = list(s.scalars(select(SeriesRow).where(SeriesRow.study_uid == study_uid)))
            if not series:
                return None
            jobs = []
            for job in s.scalars(select(Job).where(Job.study_uid == study_uid).order_by(Job.id)):
                item = job.as_dict()
                item["deliveries"] = [d.as_dict() for d in s.scalars(select(Delivery).where(Delivery.job_id == job.id))]
                jobs.append(item)
            return {"study_uid": study_uid,
                    "series": [{"series_uid": r.series_uid, "state": r.state, "revision": r.revision,
                                "calling_ae": r.calling_ae, "note": r.note} for r in series],
                    "jobs": jobs}

    def jobs(self, study_uid: str | None = None) -> list[Job]:
        with self.session() as s:
            q = select(Job).order_by(Job.id)
            if study_uid:
                q = q.where(Job.study_uid == study_uid)
            return list(s.scalars(q))

    # -- results (rollback, review intake) -------------------------------------------------------
    def segmented_by(self, model_ref: str, since: dt.datetime | None = None) -> list[Job]:
        """Jobs whose SEG came from ``model_ref`` (name/version) since ``since``, and jobs running on it
        now (they finish on the version they started with, so their SEG will come from it too)."""
        with self.session() as s:
            done = (Job.model_used == model_ref) & (Job.seg_sop_uid != "")
            running = (Job.model == model_ref) & (Job.state == JobState.RUNNING)
            q = select(Job).where(done | running).order_by(Job.id)
            if since is not None:
                q = q.where(Job.started_at >= since)
            return list(s.scalars(q))

    def with_seg(self, study_uid: str, series_uid: str | None = None) -> list[Job]:
        """Jobs of a study (and series) that produced a SEG, newest first."""
        with self.session() as s:
            q = select(Job).where(Job.study_uid == study_uid, Job.seg_sop_uid != "").order_by(Job.id.desc())
            if series_uid:
                q = q.where(Job.series_uid == series_uid)
            return list(s.scalars(q))

    def replaced_by(self, job: Job) -> Job | None:
        """The newest earlier revision of this job's series that produced a SEG (the one it supersedes)."""
        with self.session() as s:
            return s.scalar(select(Job).where(Job.study_uid == job.study_uid, Job.series_uid == job.series_uid,
                                              Job.revision < job.revision, Job.seg_series_uid != "")
                            .order_by(Job.revision.desc(), Job.id.desc()))

    def by_id(self, job_id: int) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def by_seg_sop(self, sop_uid: str) -> Job | None:
        """The job whose SEG has this SOP Instance UID (our own SEG coming back)."""
        with self.session() as s:
            return s.scalar(select(Job).where(Job.seg_sop_uid == sop_uid))

    def latest_for_series(self, series_uids: set[str]) -> Job | None:
        """The newest job that a SEG referencing these series belongs to: one of our SEG series first,
        else a source series of ours that has a SEG."""
        with self.session() as s:
            ours = s.scalar(select(Job).where(Job.seg_series_uid.in_(series_uids)).order_by(Job.id.desc()))
            if ours is not None:
                return ours
            return s.scalar(select(Job).where(Job.series_uid.in_(series_uids), Job.seg_sop_uid != "")
                            .order_by(Job.id.desc()))
