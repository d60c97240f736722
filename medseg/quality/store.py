"""Monitoring tables: reviews (with their scores), per-study features for drift, and alerts.

Each write that is a clinical fact (a review scored, an alert fired) commits with its audit
event in one transaction (audit fails closed).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from medseg.db import session
from medseg.quality.orm import Alert, Review, StudyFeatures
from medseg.quality.states import ReviewStatus


class MonitoringStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        return session(self.engine)

    def reviews(self, *, model: str | None = None, since: dt.datetime | None = None, status: str = ReviewStatus.SCORED,
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

    def review(self, review_id: int) -> Review | None:
        with self.session() as s:
            return s.get(Review, review_id)

    def reviewed_jobs(self, job_ids) -> set[int]:
        with self.session() as s:
            return set(s.scalars(select(Review.job_id).where(Review.job_id.in_(list(job_ids)), Review.status == ReviewStatus.SCORED)))

    def models_reviewed(self) -> list[str]:
        with self.session() as s:
            return sorted(set(s.scalars(select(Review.model).where(Review.status == ReviewStatus.SCORED))))

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
