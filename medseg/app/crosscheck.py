"""The tables the audit trail vouches for: registry history and scored reviews must each match
their audit event, so editing them (a forged actor of a promotion, a changed Dice that an SLO
decided on) or deleting rows shows in ``medseg audit verify`` like an edit of the trail itself.

``model_registry_history`` rows are written in the same transaction as their
``model.promoted`` / ``model.rolled_back`` / ``model.shadow_set`` event, and a scored review with
its ``review.scored`` event, so a row and its event always exist together; the event is sealed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from audit.store import row_fields
from audit.verify import VerifyResult
from medseg.db import session
from medseg.models.orm import RegistryHistory
from medseg.quality.orm import Review
from medseg.quality.states import ReviewStatus

REGISTRY_EVENTS = {"bootstrap": "model.promoted", "promote": "model.promoted", "rollback": "model.rolled_back",
                   "shadow": "model.shadow_set"}


def crosscheck(ctx, result: VerifyResult) -> VerifyResult:
    """``result`` of a chain that verified, or the first mismatch as a broken result."""
    registry_events: Counter = Counter()
    scored: dict[int, dict] = {}
    for row in ctx.auditor.log.scan():
        if row["action"] in REGISTRY_EVENTS.values():
            f = row_fields(row)
            registry_events[(f["action"], f["model"], f["actor"], f["details"].get("reason", ""))] += 1
        elif row["action"] == "review.scored":
            f = row_fields(row)
            scored[int(f["details"]["review_id"])] = f
    try:
        with session(ctx.engine) as s:
            history = list(s.scalars(select(RegistryHistory).order_by(RegistryHistory.id)))
            reviews = list(s.scalars(select(Review).where(Review.status == ReviewStatus.SCORED).order_by(Review.id)))
    except OperationalError:  # no service tables (an audit database on its own, never served)
        return dataclasses.replace(result, notes=[*result.notes, "no registry or review tables to check"])
    rows: Counter = Counter()
    for h in history:
        model = f"{h.name}:{h.to_version}" if h.to_version else ""
        reason = "bootstrap from configuration" if h.action == "bootstrap" else h.reason
        rows[(REGISTRY_EVENTS.get(h.action, h.action), model, h.actor, reason)] += 1
    if rows != registry_events:
        extra, missing = rows - registry_events, registry_events - rows
        what = (f"a registry history row {next(iter(extra))} has no matching audit event (edited or inserted)" if extra
                else f"audit event {next(iter(missing))} has no registry history row (deleted or edited)")
        return dataclasses.replace(result, ok=False, problem=f"model_registry_history disagrees with the trail: {what}")
    for r in reviews:
        event = scored.get(r.id)
        found = None if event is None else (event["model"], event["actor"], event["details"].get("dice"),
                                            event["details"].get("fn_rate"))
        expected = (r.model.replace("/", ":"), r.submitted_by, None if r.dice is None else round(r.dice, 4),
                    None if r.fn_rate is None else round(r.fn_rate, 4))
        if found != expected:
            return dataclasses.replace(result, ok=False, problem=f"review {r.id} disagrees with its review.scored event "
                                       f"({'none' if event is None else 'model, submitter or scores differ'})")
    if len(scored) != len(reviews):
        gone = sorted(set(scored) - {r.id for r in reviews})
        return dataclasses.replace(result, ok=False, problem=f"review(s) {gone[:5]} of the trail are gone from the reviews table")
    return result
