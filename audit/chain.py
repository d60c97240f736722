"""The hash chain: ``hash_n = sha256(hash_{n-1} || canonical(event_n))``, and its keyed seals.

The canonical serialization is JSON with sorted keys, no whitespace and ASCII only,
over every stored field except the hashes (sequence and timestamp included, so an
event cannot be moved or re-dated without breaking its own hash).

The chain alone shows an edit only to whoever cannot recompute it: anyone with write access to
the database can. So every event from ``keyed_from`` on also carries a **seal**, an HMAC-SHA256
of its hash under a key kept outside the database (``seal``); the head row is sealed the same
way, and so is each anchor written outside the database. Without the key an event cannot be
forged, a chain cannot be recomputed and a head or anchor cannot be rewritten unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import json

GENESIS = "0" * 64


def canonical(seq: int, ts: str, fields: dict) -> bytes:
    body = {"seq": seq, "ts": ts, **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode("ascii")


def link(prev_hash: str, seq: int, ts: str, fields: dict) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(seq, ts, fields)).hexdigest()


def seal(key: bytes, kind: str, *parts) -> str:
    """HMAC-SHA256 (hex) of ``kind`` and ``parts``, e.g. ``seal(key, "event", seq, hash)``."""
    message = "|".join([kind, *("" if p is None else str(p) for p in parts)]).encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a, b)
