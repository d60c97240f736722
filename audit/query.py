"""Filters over the event store: one query answers a postmortem question."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import and_, select, true

from audit.store import AuditLog
from audit.store import events_table as t


class AuditFilter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    study_uid: str | None = None
    series_uid: str | None = None
    model: str | None = None  # name:version
    action: str | None = None  # exact, or a prefix ending in "*" (job.*)
    actor: str | None = None
    outcome: str | None = None
    job_id: int | None = None
    since: str | None = None  # inclusive, any :func:`parse_time` form; stored normalized
    until: str | None = None  # exclusive
    limit: int = Field(default=100, ge=1, le=100_000)
    offset: int = Field(default=0, ge=0)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        return None if v is None else v.replace("/", ":")

    @field_validator("since", "until")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        return None if v is None else normalize_time(v)

    def describe(self) -> dict:
        return self.model_dump(exclude_none=True, exclude={"limit", "offset"})


def _conditions(f: AuditFilter) -> list:
    c = []
    for name in ("study_uid", "series_uid", "model", "actor", "outcome", "job_id"):
        value = getattr(f, name)
        if value is not None:
            c.append(t.c[name] == value)
    if f.action:
        c.append(t.c.action.like(f.action[:-1] + "%") if f.action.endswith("*") else t.c.action == f.action)
    if f.since:
        c.append(t.c.ts >= f.since)
    if f.until:
        c.append(t.c.ts < f.until)
    return c


#: a time relative to now: 30m, 24h, 7d, 2w
_AGO = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_SYNTAX = "30m, 24h, 7d, 2w, today, yesterday or an ISO 8601 date/time (2026-11-01, 2026-11-01T08:00Z)"


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """The one time syntax of every command, API filter and report (naive UTC): a span before now
    (``7d``), the start of ``today`` / ``yesterday`` (UTC), or ISO 8601 (naive = UTC)."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    value = text.strip()
    ago = _AGO.match(value)
    if ago:
        return now - dt.timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if value.lower() in ("today", "yesterday"):
        return midnight - dt.timedelta(days=value.lower() == "yesterday")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {value[:40]!r} (use {TIME_SYNTAX})") from None
    return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def normalize_time(value: str) -> str:
    """:func:`parse_time` in the stored form, so string comparison orders correctly."""
    return parse_time(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def query(log: AuditLog, f: AuditFilter):
    statement = select(t).where(and_(true(), *_conditions(f))).order_by(t.c.seq).limit(f.limit).offset(f.offset)
    return log.rows(statement)


def timeline(log: AuditLog, study_uid: str, limit: int = 10_000):
    """Everything that happened to one study, including its jobs' events that name only the job."""
    events = query(log, AuditFilter(study_uid=study_uid, limit=limit))
    job_ids = {e.event.job_id for e in events if e.event.job_id is not None}
    if job_ids:
        extra = log.rows(select(t).where(t.c.job_id.in_(job_ids), t.c.study_uid == "").order_by(t.c.seq))
        events = sorted(events + extra, key=lambda e: e.seq)
    return events


def describe(e) -> str:
    """One human line of a timeline."""
    ev = e.event
    bits = [f"{e.ts[:23]}Z", f"#{e.seq}", ev.action, "" if ev.outcome == "success" else "FAILED", f"by {ev.actor}"]
    if ev.job_id is not None:
        bits.append(f"job {ev.job_id}")
    if ev.model:
        bits.append(f"model {ev.model}")
    if ev.destination:
        bits.append(f"to {ev.destination}")
    d = ev.details
    for key in ("count", "reason", "status", "lesion_count", "device", "attempt", "rule", "revision"):
        if key in d:
            bits.append(f"{key}={d[key]}")
    return " ".join(b for b in bits if b)
