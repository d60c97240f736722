"""Service events (who did what to which object, with what outcome), one JSON line each.

Interim store until the tamper-evident audit trail (audit/) lands: an append-only
JSONL file under the data directory, written and flushed before the call returns;
a failed write raises (audit fails closed). Events carry UIDs, AE titles and reasons,
never patient names or IDs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("medseg.events")


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def __call__(self, action: str, *, outcome: str = "success", actor: str = "system", **details) -> None:
        event = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "action": action,
                 "outcome": outcome, "actor": actor, **{k: v for k, v in details.items() if v is not None}}
        line = json.dumps(event, sort_keys=True, default=str)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        log.info("%s %s %s", action, outcome, line if outcome != "success" else "")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
