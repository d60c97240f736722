"""Re-walk the chain, check its seals and its anchors, and report the first problem.

What is protected without the key: any edit of a stored event (its own hash no longer
matches), deletion or insertion in the middle (sequence gap, or the next event's
``prev_hash`` no longer matches), reordering (sequence and time are inside each hash).

What the key adds (``verify(log, anchors, key=...)``; audit.chain): every event from the head's
``keyed_from`` on must carry its seal, so a forged event, an edit with the chain recomputed
and a rewritten head are caught; and the anchors written outside the database (the anchors
file, the log, a syslog sink) must be sealed and chained to each other, present (a keyed trail
always has its start anchor: none at all fails), matched by the chain, and not older than the
head by more than ``anchor_every`` events — so a tail truncated together with the head, or
with the anchors file, fails instead of passing.

What is not: someone who holds the key can rewrite the database and the local anchors file
consistently; only anchors they cannot reach (a syslog host, a copy off-host) then show it.
Events never written (an action that bypasses the audit log) are not protected either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from audit.chain import GENESIS, link, same, seal
from audit.store import AuditLog, head_seal, row_fields


class Anchor(NamedTuple):
    seq: int
    hash: str
    ts: str = ""
    mac: str = ""


def anchor_seal(key: bytes, seq: int, digest: str, ts: str, previous_mac: str) -> str:
    """Each anchor's seal covers the previous anchor's: a line cannot be dropped from the middle."""
    return seal(key, "anchor", seq, digest, ts, previous_mac)


@dataclass
class VerifyResult:
    ok: bool
    events: int
    head_seq: int
    head_hash: str
    problem: str = ""
    at_seq: int | None = None
    anchors_checked: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def read_anchors(path: Path | None) -> list[Anchor]:
    if path is None or not Path(path).exists():
        return []
    anchors = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            anchors.append(Anchor(int(item["seq"]), str(item["hash"]), str(item.get("ts", "")), str(item.get("mac", ""))))
    return anchors


_LOG_KEY = object()


def verify(log: AuditLog, anchors=None, *, key=_LOG_KEY, anchor_every: int | None = None) -> VerifyResult:
    """``anchors``: those read from outside the database (None: not checked, and said so);
    ``key``: the chain key (default: the log's own); ``anchor_every``: how often the writer anchors."""
    key = log.key if key is _LOG_KEY else key
    head = log.head_row()
    head_seq, head_hash, keyed_from = head["seq"], head["hash"], head["keyed_from"]
    checked = anchors is not None
    anchors = [Anchor(*a) for a in anchors or ()]
    wanted = {a.seq: a.hash for a in anchors}
    expected_seq, prev, count, seen_anchors = 1, GENESIS, 0, 0
    notes: list[str] = []

    def broken(problem: str, seq: int | None) -> VerifyResult:
        return VerifyResult(False, count, head_seq, head_hash, problem, seq, seen_anchors, notes)

    if key is None and keyed_from is not None:
        return broken("the trail is keyed but no key was given (is the chain key file missing?)", None)
    if key is not None:
        if keyed_from is None:
            return broken("the trail carries no seals (keyed_from is empty): unkeyed, or its seals were stripped", None)
        if not same(head["mac"], head_seal(key, head_seq, head_hash, keyed_from)):
            return broken(f"the head (event {head_seq}) is not sealed by the key: head row rewritten", head_seq)
        problem = _check_anchors(anchors, key, head_seq, keyed_from, anchor_every) if checked else None
        if problem:
            return broken(*problem)
        if not checked:
            notes.append("anchors not checked: a truncated tail with its head restored from a backup would not show")
        if keyed_from > 1:
            notes.append(f"events 1..{keyed_from - 1} were written before the trail had a key (chain only)")
    for row in log.scan():
        seq = row["seq"]
        if seq != expected_seq:
            return broken(f"event(s) {expected_seq}..{seq - 1} missing (deleted)" if seq > expected_seq
                          else f"sequence {seq} out of order", seq)
        own = link(row["prev_hash"], seq, row["ts"], row_fields(row))
        if own != row["hash"]:
            return broken(f"event {seq} was altered after it was written (its hash does not match its content)", seq)
        if row["prev_hash"] != prev:
            return broken(f"event {seq} does not follow event {seq - 1} (inserted, replaced or reordered)", seq)
        if key is not None and seq >= keyed_from and not same(row.get("mac"), seal(key, "event", seq, row["hash"])):
            return broken(f"event {seq} is not sealed by the key (forged, or rewritten with the chain recomputed)", seq)
        if seq in wanted:
            if wanted[seq] != row["hash"]:
                return broken(f"event {seq} differs from the anchor recorded for it (chain rewritten)", seq)
            seen_anchors += 1
        prev, expected_seq, count = row["hash"], seq + 1, count + 1
    last_seq = expected_seq - 1
    if (last_seq, prev) != (head_seq, head_hash):
        return broken(f"the chain ends at event {last_seq} but the head says {head_seq} (tail truncated or head edited)",
                      last_seq + 1)
    missing = sorted(s for s in wanted if s > last_seq)
    if missing:
        return broken(f"anchored event {missing[0]} is gone: the tail after event {last_seq} was truncated", missing[0])
    if key is None:
        notes.append("verified without the key: a forged event or a recomputed chain would not show")
    return VerifyResult(True, count, head_seq, head_hash, anchors_checked=seen_anchors, notes=notes)


def _check_anchors(anchors: list[Anchor], key: bytes, head_seq: int, keyed_from: int, anchor_every: int | None):
    """(problem, seq) or None. Anchors of the keyed part are sealed and chained to each other;
    unsealed ones (written before the trail had a key) may only precede ``keyed_from``. With
    ``anchor_every``, there are about as many as the head implies and the newest is recent: the
    service anchors every ``anchor_every`` events (a transaction's events with the next one after
    it) and at each start and stop, so twice that is allowed before either check fails."""
    sealed = [a for a in anchors if a.mac]
    stray = next((a for a in anchors if not a.mac and a.seq >= keyed_from), None)
    if stray is not None:
        return f"anchor for event {stray.seq} is not sealed though the trail is keyed (anchors file rewritten)", stray.seq
    if not sealed:
        return "no anchors: the anchors file is missing or empty (a keyed trail always has its start anchor)", None
    previous = ""
    for a in sealed:
        if not same(a.mac, anchor_seal(key, a.seq, a.hash, a.ts, previous)):
            return (f"anchor for event {a.seq} is not sealed by the key or does not follow the anchor before it "
                    "(anchors file rewritten, or a line removed)", a.seq)
        previous = a.mac
    last = max(a.seq for a in sealed)
    if last > head_seq:
        return f"anchored event {last} is beyond the head ({head_seq}): the tail was truncated", last
    if anchor_every is not None:
        allowed = 2 * anchor_every
        if head_seq - last > allowed:
            return (f"the newest anchor is for event {last} but the head is at {head_seq}, more than {allowed} events "
                    "later: anchors missing, or events appended behind the service's back"), last
        implied = (head_seq - sealed[0].seq) // allowed
        if len(sealed) < implied:
            return f"{len(sealed)} anchor(s) where {head_seq - sealed[0].seq} events imply at least {implied}", None
    return None
