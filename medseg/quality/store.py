"""Monitoring tables: reviews (with their scores), per-study features for drift, and alerts.

Each write that is a clinical fact (a review scored, an alert fired) commits with its audit
event in one transaction (STYLE.md #16: audit fails closed).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from medseg.db import Base
from medseg.jobs.store import utcnow

SCORED, UNMATCHED = "scored", "unmatched"


def _plain(value):
    return value.isoformat() + "Z" if isinstance(value, dt.datetime) else value


class Review(Base):
    """One radiologist review of one of our SEGs (or a SEG that matched none: ``unmatched``)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # scored | unmatched
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(128), default="", index=True)  # name/version that made the SEG
    door: Mapped[str] = mapped_column(String(16))  # dicom | cli | api
    submitted_by: Mapped[str] = mapped_column(String(128), default="")  # calling AE, cli:user, api:host
    reviewer: Mapped[str] = mapped_column(String(64), default="")
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)  # accepted as is: no correction
    correction_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    stored_path: Mapped[str] = mapped_column(Text, default="")
    site: Mapped[str] = mapped_column(String(16), default="")  # calling AE that sent the study
    scanner: Mapped[str] = mapped_column(String(128), default="")  # manufacturer / model name
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    dice: Mapped[float | None] = mapped_column(Float, nullable=True)
    fn_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    reference_lesions: Mapped[int] = mapped_column(Integer, default=0)
    detected_lesions: Mapped[int] = mapped_column(Integer, default=0)
    reference_lesions_ge10: Mapped[int] = mapped_column(Integer, default=0)
    detected_lesions_ge10: Mapped[int] = mapped_column(Integer, default=0)
    false_positive_lesions: Mapped[int] = mapped_column(Integer, default=0)
    hd95_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    msd_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    fp_volume_ml: Mapped[float | None] = mapped_column(Float, nullable=True)
    volume_diff_ml: Mapped[float | None] = mapped_column(Float, nullable=True)
    scores: Mapped[dict] = mapped_column(JSON, default=dict)  # the full ReviewScores, missed lesions included
    note: Mapped[str] = mapped_column(Text, default="")

    def as_dict(self) -> dict:
        return {c.name: _plain(getattr(self, c.name)) for c in self.__table__.columns}


class StudyFeatures(Base):
    """Label-free numbers of one segmented study (input and output), for drift monitors."""

    __tablename__ = "study_features"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    model: Mapped[str] = mapped_column(String(128), index=True)  # name/version
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    features: Mapped[dict] = mapped_column(JSON, default=dict)


class Alert(Base):
    """A firing (or resolved) alert: one row per (kind, name, model) episode."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # slo | drift
    name: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)  # firing | resolved
    policy: Mapped[str] = mapped_column(String(16), default="alert")
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    action: Mapped[str] = mapped_column(Text, default="")  # what the policy did (rollback report summary)
    webhook_state: Mapped[str] = mapped_column(String(16), default="none")  # none | held (policy acting) | pending | sent | failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    webhook_error: Mapped[str] = mapped_column(Text, default="")

    def as_dict(self) -> dict:
        return {c.name: _plain(getattr(self, c.name)) for c in self.__table__.columns}


class MonitoringStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def reviews(self, *, model: str | None = None, since: dt.datetime | None = None, status: str = SCORED,
                limit: int | None = None) -> list[Review]:
        """Newest first."""
        q = select(Review).where(Review.status == status).order_by(Review.created_at.desc(), Review.id.desc())
        if model:
            q = q.where(Review.model == model)
        if since is not None:
            q = q.where(Review.created_at >= since)
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return list(s.scalars(q))

    def reviewed_jobs(self, job_ids) -> set[int]:
        with self.session() as s:
            return set(s.scalars(select(Review.job_id).where(Review.job_id.in_(list(job_ids)), Review.status == SCORED)))

    def models_reviewed(self) -> list[str]:
        with self.session() as s:
            return sorted(set(s.scalars(select(Review.model).where(Review.status == SCORED))))

    def add_features(self, job_id: int, model: str, features: dict) -> None:
        with self.session() as s, s.begin():
            s.add(StudyFeatures(job_id=job_id, model=model, features=features))

    def features(self, model_prefix: str = "", first: int | None = None, last: int | None = None) -> list[StudyFeatures]:
        """Oldest first; ``model_prefix`` 'name/' for every version of a model, 'name/version' for one.
        With ``first``/``last``: only the oldest ``first`` rows and the newest ``last`` after them
        (a drift check reads its baseline and its window, not the whole history)."""
        q = select(StudyFeatures)
        if model_prefix:
            q = q.where(StudyFeatures.model.startswith(model_prefix) if model_prefix.endswith("/")
                        else StudyFeatures.model == model_prefix)
        with self.session() as s:
            if first is None or last is None:
                return list(s.scalars(q.order_by(StudyFeatures.id)))
            head = list(s.scalars(q.order_by(StudyFeatures.id).limit(first)))
            if len(head) < first:
                return head
            tail = list(s.scalars(q.where(StudyFeatures.id > head[-1].id).order_by(StudyFeatures.id.desc()).limit(last)))
            return head + tail[::-1]

    def alerts(self, state: str | None = None) -> list[Alert]:
        q = select(Alert).order_by(Alert.id)
        if state:
            q = q.where(Alert.state == state)
        with self.session() as s:
            return list(s.scalars(q))
