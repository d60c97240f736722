"""Quality monitoring's tables: reviews (with their scores), per-study features for drift,
alerts, and the re-review worklist. States: :mod:`medseg.quality.states`."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medseg.db import Base, plain, utcnow
from medseg.quality.states import WebhookState


class Review(Base):
    """One radiologist review of one of our SEGs (or a SEG that matched none: ``unmatched``)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # ReviewStatus
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
        return {c.name: plain(getattr(self, c.name)) for c in self.__table__.columns}


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
    state: Mapped[str] = mapped_column(String(16), index=True)  # AlertState
    policy: Mapped[str] = mapped_column(String(16), default="alert")
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    action: Mapped[str] = mapped_column(Text, default="")  # what the policy did (rollback report summary)
    webhook_state: Mapped[str] = mapped_column(String(16), default=WebhookState.NONE)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    webhook_error: Mapped[str] = mapped_column(Text, default="")

    def as_dict(self) -> dict:
        return {c.name: plain(getattr(self, c.name)) for c in self.__table__.columns}


class WorklistItem(Base):
    __tablename__ = "worklist"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128))
    seg_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    closed_by: Mapped[str] = mapped_column(String(64), default="")  # "review <id>" or "already reviewed"

    def as_dict(self) -> dict:
        return {c.name: plain(getattr(self, c.name))
                for c in self.__table__.columns}
