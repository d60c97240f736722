"""The persistent job table and its state machine; the one queue boundary (swap it for a task engine here).

A job is one (study, series, model version, revision). States::

    queued -> running -> delivering -> sent
       |         |            |
       +---------+------------+--> failed        (visible: API, metrics, alert)
       +---------+------------+--> superseded    (new instances arrived; a newer revision replaces it)

``delivering`` (the SEG exists, sends are pending or being retried) is a state of its
own so that a retried send is visible as such instead of hiding under "running".
Series rows track study assembly: ``receiving`` until the quiet period passes, then
``complete`` (a job was queued) or ``ignored`` (not a series we segment, with the reason).
Instances arriving for a complete series bump its revision and the next job supersedes
the old one: its SEG goes out as a new series, never mixed into the old.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from medseg.db import Base

QUEUED, RUNNING, DELIVERING, SENT, FAILED, SUPERSEDED = "queued", "running", "delivering", "sent", "failed", "superseded"
ACTIVE = (QUEUED, RUNNING, DELIVERING)
TRANSITIONS = {
    QUEUED: {RUNNING, FAILED, SUPERSEDED},
    RUNNING: {DELIVERING, QUEUED, FAILED, SUPERSEDED},  # QUEUED: resumed after a crash
    DELIVERING: {SENT, FAILED, SUPERSEDED},
    SENT: {SUPERSEDED},
    FAILED: {SUPERSEDED},
    SUPERSEDED: set(),
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class SeriesRow(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("study_uid", "series_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    patient: Mapped[str] = mapped_column(String(64), default="")  # keyed hash of the patient ID
    accession: Mapped[str] = mapped_column(String(16), default="")  # to find the study in the PACS (never audited)
    state: Mapped[str] = mapped_column(String(16), default="receiving")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_uid", "series_uid", "model", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))  # name/version assigned when queued (the active one)
    model_used: Mapped[str] = mapped_column(String(128), default="")  # name/version that produced the SEG
    revision: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), index=True)
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    patient: Mapped[str] = mapped_column(String(64), default="")  # keyed hash of the patient ID
    accession: Mapped[str] = mapped_column(String(16), default="")
    instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    seg_path: Mapped[str] = mapped_column(Text, default="")
    seg_series_uid: Mapped[str] = mapped_column(String(64), default="")
    seg_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    result: Mapped[dict] = mapped_column(JSON, default=dict)  # device, degraded, lesions, timings

    def as_dict(self) -> dict:
        return {c.name: _plain(getattr(self, c.name)) for c in self.__table__.columns}


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, failed, cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_status: Mapped[str] = mapped_column(String(32), default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def as_dict(self) -> dict:
        return {c.name: _plain(getattr(self, c.name)) for c in self.__table__.columns if c.name != "job_id"}


def _plain(value):
    return value.isoformat() + "Z" if isinstance(value, dt.datetime) else value


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class SeriesUpdate:
    revision: int
    reopened: bool  # the series was complete: the next job supersedes the previous one


class JobStore:
    """Every state change writes its audit event (``audit``: a :class:`medseg.app.auditing.Auditor`;
    None only in unit tests of the state machine alone). ``shared_transaction``: the audit
    trail lives in this database, so the event commits in the state change's own transaction;
    otherwise it is written first, and a failed audit write aborts the state change."""

    def __init__(self, engine: Engine, audit=None, shared_transaction: bool = True) -> None:
        self.engine = engine
        self.audit = audit
        self.shared_transaction = shared_transaction

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _event(self, s: Session, action: str, **fields) -> None:
        if self.audit is not None:
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
            if row.state == "receiving":
                return SeriesUpdate(row.revision, False)
            row.state, row.revision, row.calling_ae, row.note = "receiving", row.revision + 1, calling_ae, ""
            self._event(s, "study.series_reopened", actor=calling_ae, study_uid=study_uid, series_uid=series_uid,
                        patient=row.patient, revision=row.revision)
            return SeriesUpdate(row.revision, True)

    def receiving_series(self) -> list[SeriesRow]:
        with self.session() as s:
            return list(s.scalars(select(SeriesRow).where(SeriesRow.state == "receiving")))

    def known_series(self) -> set[tuple[str, str]]:
        with self.session() as s:
            return {(r.study_uid, r.series_uid) for r in s.scalars(select(SeriesRow))}

    def complete_series(self, study_uid: str, series_uid: str, model: str, instances: int,
                        *, ignored_reason: str = "", failed: tuple[str, str] | None = None,
                        quiet_period_s: float | None = None) -> Job | None:
        """The quiet period passed: queue a job (superseding older ones), or record why not.

        ``ignored_reason``: not a series we segment (no job). ``failed``: (code, message) of
        a check that failed before queueing; the job is created failed, so it stays visible.
        """
        with self.session() as s, s.begin():
            row = s.scalar(select(SeriesRow).where(SeriesRow.study_uid == study_uid, SeriesRow.series_uid == series_uid))
            if row is None or row.state != "receiving":
                return None
            row.state, row.note = ("ignored", ignored_reason) if ignored_reason else ("complete", "")
            ids = dict(study_uid=study_uid, series_uid=series_uid, patient=row.patient)
            self._event(s, "study.series_complete", quiet_period_s=quiet_period_s, instances=instances,
                        slice_continuity="failed" if failed else "not checked" if ignored_reason else "ok", **ids)
            if ignored_reason:
                self._event(s, "study.series_not_selected", reason=ignored_reason, **ids)
                return None
            for old in s.scalars(select(Job).where(Job.study_uid == study_uid, Job.series_uid == series_uid,
                                                   Job.state != SUPERSEDED)):
                _move(old, SUPERSEDED)
                old.error = f"superseded by revision {row.revision} (instances arrived after the job was created)"
                s.execute(update(Delivery).where(Delivery.job_id == old.id, Delivery.state == "pending")
                          .values(state="cancelled"))
                self._event(s, "job.superseded", job_id=old.id, model=old.model, by_revision=row.revision, **ids)
            job = Job(study_uid=study_uid, series_uid=series_uid, model=model, revision=row.revision,
                      state=QUEUED, calling_ae=row.calling_ae, instances=instances, patient=row.patient,
                      accession=row.accession)
            if failed:
                job.state, (job.error_code, job.error) = FAILED, failed
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
            for job_id in s.scalars(select(Job.id).where(Job.state == QUEUED).order_by(Job.id).limit(5)):
                now = utcnow()
                claimed = s.execute(update(Job).where(Job.id == job_id, Job.state == QUEUED).values(
                    state=RUNNING, started_at=now, updated_at=now, attempts=Job.attempts + 1)).rowcount
                if claimed:
                    job = s.get(Job, job_id)
                    self._event(s, "job.started", job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid,
                                model=job.model, patient=job.patient, attempt=job.attempts, revision=job.revision)
                    return job
        return None

    def queue_depth(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(Job.state == QUEUED)) or 0

    def finish(self, job_id: int, *, seg_path: str, seg_series_uid: str, seg_sop_uid: str, result: dict,
               destinations: list[str], duration_s: float | None = None, model_sha256: str = "",
               model_used: str = "") -> Job:
        """The SEG exists: record it and queue one delivery per destination (none: sent at once)."""
        with self.session() as s, s.begin():
            job = s.get(Job, job_id)
            job.seg_path, job.seg_series_uid, job.seg_sop_uid, job.result = seg_path, seg_series_uid, seg_sop_uid, result
            job.model_used = model_used or job.model
            ids = dict(job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid, model=job.model_used,
                       sha256=model_sha256, patient=job.patient)
            self._event(s, "seg.created", sop_uid=seg_sop_uid, seg_series_uid=seg_series_uid,
                        lesion_count=result.get("lesion_count"), **ids)
            self._event(s, "job.finished", device=result.get("device"), degraded=result.get("degraded"),
                        fallback=result.get("fallback"), queued_model=job.model,
                        duration_s=duration_s, timings_s=result.get("timings_s"), destinations=destinations,
                        superseded=job.state == SUPERSEDED, **ids)
            if job.state == SUPERSEDED:
                return job
            _move(job, DELIVERING)
            for name in destinations:
                s.add(Delivery(job_id=job.id, destination=name))
            if not destinations:
                _move(job, SENT)
                job.error = "no destination configured for this study; SEG kept in the results folder"
            return job

    def fail(self, job_id: int, code: str, message: str) -> Job:
        with self.session() as s, s.begin():
            job = s.get(Job, job_id)
            if job.state != SUPERSEDED:
                _move(job, FAILED)
            job.error_code, job.error, job.finished_at = code, message, utcnow()
            ids = dict(job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid, model=job.model,
                       patient=job.patient)
            self._event(s, "job.failed", outcome="failure", code=code, reason=message, **ids)
            self._event(s, "alert.job_failed", outcome="failure", code=code, reason=message, **ids)
            return job

    def recover(self) -> int:
        """After a restart: jobs that were running go back to the queue. Returns how many."""
        with self.session() as s, s.begin():
            ids = list(s.scalars(select(Job.id).where(Job.state == RUNNING)))
            s.execute(update(Job).where(Job.state == RUNNING).values(state=QUEUED, updated_at=utcnow()))
            if ids:
                self._event(s, "service.recovered", jobs_requeued=len(ids), job_ids=ids)
            return len(ids)

    # -- deliveries ----------------------------------------------------------------------------
    def due_deliveries(self, now: dt.datetime | None = None) -> list[tuple[Delivery, Job]]:
        with self.session() as s:
            rows = s.execute(select(Delivery, Job).join(Job, Job.id == Delivery.job_id).where(
                Delivery.state == "pending", Delivery.next_attempt_at <= (now or utcnow()), Job.state == DELIVERING)
                .order_by(Delivery.next_attempt_at))
            return [(d, j) for d, j in rows]

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
                d.state, d.sent_at = "sent", utcnow()
            elif retry_at is not None:
                d.next_attempt_at = retry_at
            else:
                d.state = "failed"
            states = [x.state for x in s.scalars(select(Delivery).where(Delivery.job_id == job.id))]
            if job.state == DELIVERING:
                if "failed" in states:
                    _move(job, FAILED)
                    job.error_code, job.error = "delivery.failed", f"sending to {d.destination} failed: {error}"
                    job.finished_at = utcnow()
                    self._event(s, "alert.job_failed", outcome="failure", code=job.error_code, reason=job.error, **ids)
                elif all(x == "sent" for x in states):
                    _move(job, SENT)
                    job.finished_at = utcnow()
            return d, job

    # -- reads -----------------------------------------------------------------------------------
    def studies(self, limit: int = 100, offset: int = 0) -> list[dict]:
        with self.session() as s:
            rows = s.execute(select(Job.study_uid, func.count(Job.id), func.max(Job.updated_at))
                             .group_by(Job.study_uid).order_by(func.max(Job.updated_at).desc())
                             .limit(limit).offset(offset))
            out = []
            for study_uid, count, updated in rows:
                states = list(s.scalars(select(Job.state).where(Job.study_uid == study_uid)))
                out.append({"study_uid": study_uid, "jobs": count, "updated_at": _plain(updated),
                            "states": {st: states.count(st) for st in sorted(set(states))}})
            return out

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

    def reprocess(self, job_id: int, model: str, *, reason: str, actor: str) -> Job:
        """Queue the job's series again on ``model`` on purpose: a new revision, so the new SEG is a new
        series and what the viewer already showed is never overwritten; the old job is superseded."""
        with self.session() as s, s.begin():
            old = s.get(Job, job_id)
            row = s.scalar(select(SeriesRow).where(SeriesRow.study_uid == old.study_uid,
                                                   SeriesRow.series_uid == old.series_uid))
            row.revision += 1
            if old.state != SUPERSEDED:
                _move(old, SUPERSEDED)
                old.error = f"superseded by reprocessing on {model}: {reason}"
            job = Job(study_uid=old.study_uid, series_uid=old.series_uid, model=model, revision=row.revision,
                      state=QUEUED, calling_ae=old.calling_ae, instances=old.instances, patient=old.patient,
                      accession=old.accession)
            s.add(job)
            s.flush()
            self._event(s, "job.reprocess_queued", actor=actor, job_id=job.id, study_uid=job.study_uid,
                        series_uid=job.series_uid, model=model, patient=job.patient, replaces_job=old.id, reason=reason)
            return job

    def segmented_by(self, model_ref: str, since: dt.datetime | None = None) -> list[Job]:
        """Jobs whose SEG came from ``model_ref`` (name/version) since ``since``, and jobs running on it
        now (they finish on the version they started with, so their SEG will come from it too)."""
        with self.session() as s:
            done = (Job.model_used == model_ref) & (Job.seg_sop_uid != "")
            running = (Job.model == model_ref) & (Job.state == RUNNING)
            q = select(Job).where(done | running).order_by(Job.id)
            if since is not None:
                q = q.where(Job.started_at >= since)
            return list(s.scalars(q))

    def repoint_queued(self, model_ref: str, new_ref: str, *, actor: str, reason: str) -> int:
        """Queued jobs that have not started on ``model_ref`` will run on ``new_ref`` instead."""
        with self.session() as s, s.begin():
            ids = list(s.scalars(select(Job.id).where(Job.model == model_ref, Job.state == QUEUED)))
            if ids:
                s.execute(update(Job).where(Job.id.in_(ids)).values(model=new_ref, updated_at=utcnow()))
                self._event(s, "job.repointed", actor=actor, model=new_ref, previous=model_ref, job_ids=ids,
                            reason=reason)
            return len(ids)

    def jobs(self, study_uid: str | None = None) -> list[Job]:
        with self.session() as s:
            q = select(Job).order_by(Job.id)
            if study_uid:
                q = q.where(Job.study_uid == study_uid)
            return list(s.scalars(q))


def _move(job: Job, state: str) -> None:
    if state not in TRANSITIONS[job.state]:
        raise IllegalTransition(f"job {job.id}: {job.state} -> {state} is not allowed")
    job.state, job.updated_at = state, utcnow()
