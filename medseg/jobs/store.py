"""The job table's writes: every state change of a series, job or delivery, with its audit event.

This is the one queue boundary (a distributed task engine replaces ``claim_next`` here).
Reads live in :class:`medseg.jobs.queries.JobQueries`; states and the allowed transitions in
:mod:`medseg.jobs.states`. Instances arriving for a complete series bump its revision and the
next job supersedes the old one: its SEG goes out as a new series, never mixed into the old.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from audit.recorder import Recorder
from medseg.core.exceptions import JobTakenOverError
from medseg.db import utcnow
from medseg.jobs.orm import Delivery, Job, SeriesRow
from medseg.jobs.queries import JobQueries
from medseg.jobs.states import DeliveryState, JobState, SeriesState, check_transition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesUpdate:
    revision: int
    reopened: bool  # the series was complete: the next job supersedes the previous one


def worker_id() -> str:
    """This worker process, as the job table records who ran a job: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobStore(JobQueries):
    """The read model plus every state change, each with its audit event (fail closed).
    ``shared_transaction``: the audit trail lives in this database, so the event commits in the
    state change's own transaction; otherwise it is written first, and a failed audit write
    aborts the state change."""

    def __init__(self, engine: Engine, audit: Recorder, shared_transaction: bool = True) -> None:
        super().__init__(engine)
        self.audit = audit
        self.shared_transaction = shared_transaction

    def _event(self, s: Session, action: str, **fields) -> None:
        self.audit(action, connection=s.connection() if self.shared_transaction else None, **fields)

    # -- study assembly -------------------------------------------------------------------
    def series_seen(self, study_uid: str, series_uid: str, calling_ae: str, patient: str = "",
                    accession: str = "") -> SeriesUpdate:
        """Record that (new) instances of a series arrived; reopen it if it was complete."""
        with self.session() as s, s.begin():
            row = s.scalar(select(SeriesRow).where(SeriesRow.study_uid == study_uid, SeriesRow.series_uid == series_uid))
            if row is None:
                s.add(SeriesRow(study_uid=study_uid, series_uid=series_uid, calling_ae=calling_ae, patient=patient,
                                accession=accession))
                return SeriesUpdate(1, False)
            if row.state == SeriesState.RECEIVING:
                return SeriesUpdate(row.revision, False)
            row.state, row.revision, row.calling_ae, row.note = SeriesState.RECEIVING, row.revision + 1, calling_ae, ""
            self._event(s, "study.series_reopened", actor=calling_ae, study_uid=study_uid, series_uid=series_uid,
                        patient=row.patient, revision=row.revision)
            return SeriesUpdate(row.revision, True)

    def complete_series(self, study_uid: str, series_uid: str, model: str, instances: int,
                        *, ignored_reason: str = "", failed: tuple[str, str] | None = None,
                        quiet_period_s: float | None = None) -> Job | None:
        """The quiet period passed: queue a job (superseding older ones), or record why not.

        ``ignored_reason``: not a series we segment (no job). ``failed``: (code, message) of
        a check that failed before queueing; the job is created failed, so it stays visible.
        """
        with self.session() as s, s.begin():
            row = s.scalar(select(SeriesRow).where(SeriesRow.study_uid == study_uid, SeriesRow.series_uid == series_uid))
            if row is None or row.state != SeriesState.RECEIVING:
                return None
            row.state, row.note = (SeriesState.IGNORED, ignored_reason) if ignored_reason else (SeriesState.COMPLETE, "")
            ids = dict(study_uid=study_uid, series_uid=series_uid, patient=row.patient)
            self._event(s, "study.series_complete", quiet_period_s=quiet_period_s, instances=instances,
                        slice_continuity="failed" if failed else "not checked" if ignored_reason else "ok", **ids)
            if ignored_reason:
                self._event(s, "study.series_not_selected", reason=ignored_reason, **ids)
                return None
            for old in s.scalars(select(Job).where(Job.study_uid == study_uid, Job.series_uid == series_uid,
                                                   Job.state != JobState.SUPERSEDED)):
                _move(old, JobState.SUPERSEDED)
                old.error = f"superseded by revision {row.revision} (instances arrived after the job was created)"
                s.execute(update(Delivery).where(Delivery.job_id == old.id, Delivery.state == DeliveryState.PENDING)
                          .values(state=DeliveryState.CANCELLED))
                self._event(s, "job.superseded", job_id=old.id, model=old.model, by_revision=row.revision, **ids)
            job = Job(study_uid=study_uid, series_uid=series_uid, model=model, revision=row.revision,
                      state=JobState.QUEUED, calling_ae=row.calling_ae, instances=instances, patient=row.patient,
                      accession=row.accession)
            if failed:
                job.state, (job.error_code, job.error) = JobState.FAILED, failed
                job.finished_at = utcnow()
            else:
                self._event(s, "study.series_selected", rule="passes the selection and geometry rules", **ids)
            s.add(job)
            s.flush()
            if failed:
                self._event(s, "job.failed", outcome="failure", job_id=job.id, model=model, code=failed[0],
                            reason=failed[1], **ids)
            else:
                self._event(s, "job.queued", job_id=job.id, model=model, revision=job.revision, instances=instances,
                            **ids)
            return job

    # -- the queue boundary -----------------------------------------------------------------
    def claim_next(self) -> Job | None:
        """Atomically take the oldest queued job (a conditional UPDATE: safe for several workers)."""
        with self.session() as s, s.begin():
            for job_id in s.scalars(select(Job.id).where(Job.state == JobState.QUEUED).order_by(Job.id).limit(5)):
                job = self._take(s, job_id, JobState.QUEUED)
                if job is not None:
                    return job
        return None

    def claim(self, job_id: int, series_uid: str, *, take_over: bool = False) -> Job | None:
        """A broker's worker (medseg.jobs.broker): take job ``job_id`` if it is queued — or, with
        ``take_over``, if it is running (the broker redelivered its message: the worker that held it
        died or lost its connection). None: nothing to do (another worker has it, it ended, or the
        message is not of this database: no job ``job_id`` of ``series_uid``)."""
        allowed = [JobState.QUEUED, JobState.RUNNING] if take_over else [JobState.QUEUED]
        with self.session() as s, s.begin():
            before = s.get(Job, job_id)
            if before is None or before.series_uid != series_uid:
                log.warning("a job message matches no job here (job %s); dropped", job_id)
                return None
            if before.state not in allowed:
                return None
            taken = dict(taken_over_from=before.worker) if before.state == JobState.RUNNING else {}
            return self._take(s, job_id, before.state, **taken)

    def _take(self, s: Session, job_id: int, was: JobState, **details) -> Job | None:
        """Job ``job_id`` -> running on this worker if it is still ``was`` (one conditional UPDATE:
        of two workers, one gets it), recorded as ``job.started``; None if another got it first."""
        now = utcnow()
        claimed = s.execute(update(Job).where(Job.id == job_id, Job.state == was).values(
            state=JobState.RUNNING, started_at=now, updated_at=now, attempts=Job.attempts + 1,
            worker=worker_id())).rowcount
        if not claimed:
            return None
        job = s.get(Job, job_id, populate_existing=True)
        self._event(s, "job.started", job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid,
                    model=job.model, patient=job.patient, attempt=job.attempts, revision=job.revision,
                    worker=job.worker, **details)
        return job

    def finish(self, job_id: int, *, seg_path: str, seg_series_uid: str, seg_sop_uid: str, result: dict,
               destinations: list[str], duration_s: float | None = None, model_sha256: str = "",
               model_used: str = "", manifest_sha256: str = "") -> Job:
        """The SEG exists: record it and queue one delivery per destination (none: sent at once).
        A job another worker has taken over meanwhile is not this worker's to finish
        (:class:`JobTakenOverError`): its result is discarded, so a study gets one SEG."""
        with self.session() as s, s.begin():
            job = s.get(Job, job_id)
            _check_mine(job)
            job.seg_path, job.seg_series_uid, job.seg_sop_uid, job.result = seg_path, seg_series_uid, seg_sop_uid, result
            job.model_used = model_used or job.model
            ids = dict(job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid, model=job.model_used,
                       sha256=model_sha256, manifest_sha256=manifest_sha256 or None, patient=job.patient)
            replaces = result.get("replaces") or {}
            self._event(s, "seg.created", sop_uid=seg_sop_uid, seg_series_uid=seg_series_uid,
                        lesion_count=result.get("lesion_count"), replaces_job=replaces.get("job_id"),
                        replaces_seg_series_uid=replaces.get("seg_series_uid"), **ids)
            self._event(s, "job.finished", device=result.get("device"), degraded=result.get("degraded"),
                        fallback=result.get("fallback"), queued_model=job.model,
                        duration_s=duration_s, timings_s=result.get("timings_s"), destinations=destinations,
                        superseded=job.state == JobState.SUPERSEDED, **ids)
            if job.state == JobState.SUPERSEDED:
                return job
            _move(job, JobState.DELIVERING)
            for name in destinations:
                s.add(Delivery(job_id=job.id, destination=name))
            if not destinations:
                _move(job, JobState.SENT)
                job.error = "no destination configured for this study; SEG kept in the results folder"
            return job

    def fail(self, job_id: int, code: str, message: str) -> Job:
        with self.session() as s, s.begin():
            job = s.get(Job, job_id)
            _check_mine(job)
            if job.state != JobState.SUPERSEDED:
                _move(job, JobState.FAILED)
            job.error_code, job.error, job.finished_at = code, message, utcnow()
            ids = dict(job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid, model=job.model,
                       patient=job.patient)
            self._event(s, "job.failed", outcome="failure", code=code, reason=message, **ids)
            self._event(s, "alert.job_failed", outcome="failure", code=code, reason=message, **ids)
            return job

    def requeue(self, job_id: int, reason: str) -> None:
        """A running job the worker could not finish for a reason outside the study and the model
        (the database or the disk) goes back to the queue, to run again once that is fixed."""
        with self.session() as s, s.begin():
            moved = s.execute(update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING,
                                                Job.worker.in_(("", worker_id())))  # not if taken over
                              .values(state=JobState.QUEUED, updated_at=utcnow())).rowcount
            if moved:
                job = s.get(Job, job_id)
                self._event(s, "job.requeued", outcome="failure", job_id=job.id, study_uid=job.study_uid,
                            series_uid=job.series_uid, model=job.model, reason=reason)

    def recover(self) -> int:
        """After a restart: jobs that were running go back to the queue. Returns how many."""
        with self.session() as s, s.begin():
            ids = list(s.scalars(select(Job.id).where(Job.state == JobState.RUNNING)))
            s.execute(update(Job).where(Job.state == JobState.RUNNING).values(state=JobState.QUEUED, updated_at=utcnow()))
            if ids:
                self._event(s, "service.recovered", jobs_requeued=len(ids), job_ids=ids)
            return len(ids)

    # -- deliveries ----------------------------------------------------------------------------
    def delivery_result(self, delivery_id: int, *, ok: bool, status: str, error: str = "",
                        retry_at: dt.datetime | None = None) -> tuple[Delivery, Job]:
        """Record one send attempt; ``retry_at`` None on failure means retries are exhausted."""
        with self.session() as s, s.begin():
            d = s.get(Delivery, delivery_id)
            job = s.get(Job, d.job_id)
            d.attempts += 1
            d.last_status, d.last_error = status, error
            ids = dict(job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid, model=job.model,
                       sop_uid=job.seg_sop_uid, destination=d.destination, patient=job.patient)
            self._event(s, "seg.sent" if ok else "seg.send_failed", outcome="success" if ok else "failure",
                        attempt=d.attempts, status=status, reason=error or None,
                        will_retry=None if ok else retry_at is not None, **ids)
            if ok:
                d.state, d.sent_at = DeliveryState.SENT, utcnow()
            elif retry_at is not None:
                d.next_attempt_at = retry_at
            else:
                d.state = DeliveryState.FAILED
            states = [x.state for x in s.scalars(select(Delivery).where(Delivery.job_id == job.id))]
            if job.state == JobState.DELIVERING:
                if DeliveryState.FAILED in states:
                    _move(job, JobState.FAILED)
                    job.error_code, job.error = "delivery.failed", f"sending to {d.destination} failed: {error}"
                    job.finished_at = utcnow()
                    self._event(s, "alert.job_failed", outcome="failure", code=job.error_code, reason=job.error, **ids)
                elif all(x == DeliveryState.SENT for x in states):
                    _move(job, JobState.SENT)
                    job.finished_at = utcnow()
            return d, job

    def reprocess(self, job_id: int, model: str, *, reason: str, actor: str) -> Job:
        """Queue the job's series again on ``model`` on purpose: a new revision, so the new SEG is a new
        series and what the viewer already showed is never overwritten; the old job is superseded."""
        with self.session() as s, s.begin():
            old = s.get(Job, job_id)
            row = s.scalar(select(SeriesRow).where(SeriesRow.study_uid == old.study_uid,
                                                   SeriesRow.series_uid == old.series_uid))
            row.revision += 1
            if old.state != JobState.SUPERSEDED:
                _move(old, JobState.SUPERSEDED)
                old.error = f"superseded by reprocessing on {model}: {reason}"
            job = Job(study_uid=old.study_uid, series_uid=old.series_uid, model=model, revision=row.revision,
                      state=JobState.QUEUED, calling_ae=old.calling_ae, instances=old.instances, patient=old.patient,
                      accession=old.accession)
            s.add(job)
            s.flush()
            self._event(s, "job.reprocess_queued", actor=actor, job_id=job.id, study_uid=job.study_uid,
                        series_uid=job.series_uid, model=model, patient=job.patient, replaces_job=old.id, reason=reason)
            return job

    def repoint_queued(self, model_ref: str, new_ref: str, *, actor: str, reason: str) -> int:
        """Queued jobs that have not started on ``model_ref`` will run on ``new_ref`` instead."""
        with self.session() as s, s.begin():
            # one conditional UPDATE: a job a worker claims meanwhile (another process, scale-out) is
            # running, not queued, and keeps its version
            ids = sorted(s.scalars(update(Job).where(Job.model == model_ref, Job.state == JobState.QUEUED)
                                   .values(model=new_ref, updated_at=utcnow()).returning(Job.id)))
            if ids:
                self._event(s, "job.repointed", actor=actor, model=new_ref, previous=model_ref, job_ids=ids,
                            reason=reason)
            return len(ids)


def _check_mine(job: Job) -> None:
    """A running job is finished or failed only by the worker that runs it (see ``claim``)."""
    if job.state == JobState.RUNNING and job.worker and job.worker != worker_id():
        raise JobTakenOverError(f"job {job.id} was taken over by worker {job.worker}")


def _move(job: Job, state: JobState) -> None:
    check_transition(job.id, job.state, state)
    job.state, job.updated_at = state, utcnow()
