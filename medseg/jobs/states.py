"""The states of the job table's rows, and the one place the allowed job transitions are written.

A job is one (study, series, model version, revision)::

    queued -> running -> delivering -> sent
       |         |            |
       +---------+------------+--> failed        (visible: API, metrics, alert)
       +---------+------------+--> superseded    (new instances arrived; a newer revision replaces it)

``delivering`` (the SEG exists, sends are pending or being retried) is a state of its own so
that a retried send is visible as such instead of hiding under "running". ``running -> queued``
is the resume after a crash.

Values are stored as their strings (``StrEnum``): a row read back compares equal to the member.
"""

from __future__ import annotations

from enum import StrEnum

from medseg.core.exceptions import IllegalTransition


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DELIVERING = "delivering"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class SeriesState(StrEnum):
    """Study assembly: ``receiving`` until the quiet period passes, then ``complete`` (a job was
    queued) or ``ignored`` (not a series we segment, with the reason)."""

    RECEIVING = "receiving"
    COMPLETE = "complete"
    IGNORED = "ignored"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the job was superseded before the send


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.SUPERSEDED}),
    JobState.RUNNING: frozenset({JobState.DELIVERING, JobState.QUEUED, JobState.FAILED, JobState.SUPERSEDED}),
    JobState.DELIVERING: frozenset({JobState.SENT, JobState.FAILED, JobState.SUPERSEDED}),
    JobState.SENT: frozenset({JobState.SUPERSEDED}),
    JobState.FAILED: frozenset({JobState.SUPERSEDED}),
    JobState.SUPERSEDED: frozenset(),
}


def check_transition(job_id: int, current: str, new: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is an allowed job transition."""
    if new not in TRANSITIONS[JobState(current)]:
        raise IllegalTransition(f"job {job_id}: {current} -> {new} is not allowed")
