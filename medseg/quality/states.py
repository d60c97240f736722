"""The states of quality monitoring's rows (stored as their strings)."""

from __future__ import annotations

from enum import StrEnum


class ReviewStatus(StrEnum):
    SCORED = "scored"  # matched to one of our SEGs and scored
    UNMATCHED = "unmatched"  # a SEG that references no series or SEG of ours; kept, not scored


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class WebhookState(StrEnum):
    """The alert's webhook outbox: ``held`` while the fallback policy acts, then ``pending`` until sent."""

    NONE = "none"  # no webhook configured
    HELD = "held"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
