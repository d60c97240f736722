"""The job table's rows: series being assembled, jobs (one study, series, model version,
revision) and deliveries (one SEG to one destination). States: :mod:`medseg.jobs.states`."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medseg.db import Base, plain, utcnow
from medseg.jobs.states import DeliveryState, SeriesState


class SeriesRow(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("study_uid", "series_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    patient: Mapped[str] = mapped_column(String(64), default="")  # keyed hash of the patient ID
    accession: Mapped[str] = mapped_column(String(16), default="")  # to find the study in the PACS (never audited)
    state: Mapped[str] = mapped_column(String(16), default=SeriesState.RECEIVING)
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
    #: the worker process that ran it last ("host:pid"): several may share the queue (migration 0002)
    worker: Mapped[str] = mapped_column(String(128), default="", server_default="")
    error_code: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    seg_path: Mapped[str] = mapped_column(Text, default="")
    seg_series_uid: Mapped[str] = mapped_column(String(64), default="")
    seg_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    result: Mapped[dict] = mapped_column(JSON, default=dict)  # device, degraded, lesions, timings

    def as_dict(self) -> dict:
        return {c.name: plain(getattr(self, c.name)) for c in self.__table__.columns}


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_status: Mapped[str] = mapped_column(String(32), default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def as_dict(self) -> dict:
        return {c.name: plain(getattr(self, c.name)) for c in self.__table__.columns if c.name != "job_id"}
