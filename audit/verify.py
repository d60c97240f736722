"""Re-walk the chain and report the first broken link.

What is protected: any edit of a stored event (its own hash no longer matches), deletion
or insertion in the middle (sequence gap, or the next event's ``prev_hash`` no longer
matches), reordering (sequence and time are inside each hash), and truncation of the
tail as far as an anchor reaches: the head row is checked against the last event, and
each anchor (sequence, hash) written outside the database (application log, anchors
file, ``GET /audit/head``) must still be in the chain.

What is not: someone with write access to the database who rewrites the *whole* chain
after the last anchor they cannot reach, and events never written (an action that
bypasses the audit log). Anchors are the defence for the first; keep them off-host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from audit.chain import GENESIS, link
from audit.store import AuditLog, row_fields


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


def read_anchors(path: Path | None) -> list[tuple[int, str]]:
    if path is None or not Path(path).exists():
        return []
    anchors = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            anchors.append((int(item["seq"]), str(item["hash"])))
    return anchors


def verify(log: AuditLog, anchors: list[tuple[int, str]] = ()) -> VerifyResult:
    head_seq, head_hash = log.head()
    wanted = {seq: h for seq, h in anchors}
    expected_seq, prev, count, seen_anchors = 1, GENESIS, 0, 0

    def broken(problem: str, seq: int | None) -> VerifyResult:
        return VerifyResult(False, count, head_seq, head_hash, problem, seq, seen_anchors)

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
    return VerifyResult(True, count, head_seq, head_hash, anchors_checked=seen_anchors)
