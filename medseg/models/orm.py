"""The model registry's tables: the active (and shadow) version per model name, the history of
switches, and the results of shadow runs."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medseg.db import Base, utcnow


class ModelState(Base):
    __tablename__ = "model_registry"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    active: Mapped[str] = mapped_column(String(64))
    shadow: Mapped[str] = mapped_column(String(64), default="")  # candidate run in shadow on live studies
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RegistryHistory(Base):
    __tablename__ = "model_registry_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(48), index=True)
    action: Mapped[str] = mapped_column(String(16))  # bootstrap, promote, rollback
    from_version: Mapped[str] = mapped_column(String(64), default="")
    to_version: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    def as_dict(self) -> dict:
        return {"action": self.action, "from": self.from_version, "to": self.to_version, "actor": self.actor,
                "reason": self.reason, "at": self.at.isoformat() + "Z"}


class ShadowResult(Base):
    __tablename__ = "shadow_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    candidate: Mapped[str] = mapped_column(String(128), index=True)  # name/version
    active: Mapped[str] = mapped_column(String(128))
    dice: Mapped[float | None] = mapped_column(Float, nullable=True)
    lesions_active: Mapped[int] = mapped_column(Integer, default=0)
    lesions_candidate: Mapped[int] = mapped_column(Integer, default=0)
    volume_active_ml: Mapped[float] = mapped_column(Float, default=0.0)
    volume_candidate_ml: Mapped[float] = mapped_column(Float, default=0.0)
    seconds_active: Mapped[float] = mapped_column(Float, default=0.0)
    seconds_candidate: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
