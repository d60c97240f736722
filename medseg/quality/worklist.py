"""The re-review worklist: studies a radiologist should look at again (e.g. after a model rollback).

An item names the study, the job whose SEG is in question, the model version that produced it
and why; it stays open until a review of the study arrives (quality-monitoring issue) or it is
closed explicitly. Adding an item is audited in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from audit.recorder import Recorder
from medseg.db import session, utcnow
from medseg.quality.orm import WorklistItem


class Worklist:
    def __init__(self, engine: Engine, audit: Recorder) -> None:
        self.engine, self.audit = engine, audit

    def add(self, jobs, reason: str, actor: str, reviewed: set[int] = frozenset()) -> list[WorklistItem]:
        """One item per job; a job in ``reviewed`` (a radiologist's review of its SEG is already in)
        gets an item that is closed at once, so the list shows it was affected and needs nothing more."""
        with session(self.engine) as s, s.begin():
            items = []
            for job in jobs:
                item = WorklistItem(study_uid=job.study_uid, series_uid=job.series_uid, job_id=job.id,
                                    model=job.model_used, seg_sop_uid=job.seg_sop_uid, reason=reason)
                if job.id in reviewed:
                    item.closed_at, item.closed_by = utcnow(), "already reviewed"
                s.add(item)
                items.append(item)
                self.audit("review.worklist_added", connection=s.connection(), actor=actor, job_id=job.id,
                           study_uid=job.study_uid, series_uid=job.series_uid, model=job.model_used,
                           sop_uid=job.seg_sop_uid, reason=reason)
            return items

    def close_for_series(self, s: Session, study_uid: str, series_uid: str, review_id: int, actor: str) -> int:
        """A review of the series arrived: close its open items (inside the caller's transaction)."""
        items = list(s.scalars(select(WorklistItem).where(WorklistItem.study_uid == study_uid,
                                                          WorklistItem.series_uid == series_uid,
                                                          WorklistItem.closed_at.is_(None))))
        for item in items:
            item.closed_at, item.closed_by = utcnow(), f"review {review_id}"
            self.audit("review.worklist_closed", connection=s.connection(), actor=actor, job_id=item.job_id,
                       study_uid=study_uid, series_uid=series_uid, review_id=review_id)
        return len(items)

    def items(self) -> list[WorklistItem]:
        with session(self.engine) as s:
            return list(s.scalars(select(WorklistItem).order_by(WorklistItem.id)))

    def open_items(self) -> list[WorklistItem]:
        with session(self.engine) as s:
            return list(s.scalars(select(WorklistItem).where(WorklistItem.closed_at.is_(None)).order_by(WorklistItem.id)))
