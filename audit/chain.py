"""The hash chain: ``hash_n = sha256(hash_{n-1} || canonical(event_n))``.

The canonical serialization is JSON with sorted keys, no whitespace and ASCII only,
over every stored field except the hashes (sequence and timestamp included, so an
event cannot be moved or re-dated without breaking its own hash).
"""

from __future__ import annotations

import hashlib
import json

GENESIS = "0" * 64


def canonical(seq: int, ts: str, fields: dict) -> bytes:
    body = {"seq": seq, "ts": ts, **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode("ascii")


def link(prev_hash: str, seq: int, ts: str, fields: dict) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(seq, ts, fields)).hexdigest()
