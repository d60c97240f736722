"""The states of quality monitoring's rows (stored as their strings)."""

from __future__ import annotations

from enum import StrEnum


class ReviewStatus(StrEnum):
    """received -> scoring -> scored | rejected; a SEG matching none of ours is unmatched at once."""

    RECEIVED = "received"  # stored (its mask kept), waiting for the scoring loop
    SCORING = "scoring"  # claimed by one scorer (back to received if the process dies)
    SCORED = "scored"  # matched to one of our SEGs and scored
    REJECTED = "rejected"  # could not be scored (off-grid, unreadable, source gone): why in note
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
