"""The node fails closed while the audit trail cannot be written (issue 17: with the audit
database failing, the node kept acknowledging studies whose arrival was recorded nowhere).

:class:`AuditGate` is the node's :class:`~audit.recorder.Recorder`: every event of the node goes
through it. The first write that fails closes the gate; while it is closed every C-STORE is
answered **0xA700** (out of resources: the sender keeps the study and retries, as it does for a
full disk), counted but not recorded (recording is what fails). Every ``retry_s`` seconds the
next C-STORE probes the trail by writing ``audit.restored`` (how long it was down, how many
instances were refused); when that write succeeds the gate opens again, by itself, and that
event is the trail's own record of the outage.
"""

from __future__ import annotations

import logging
import threading
import time

from audit.recorder import Recorder

log = logging.getLogger(__name__)


class AuditUnavailable(RuntimeError):
    """The audit trail cannot be written; the node refuses work until it can."""


class AuditGate:
    def __init__(self, record: Recorder, retry_s: float = 2.0, clock=time.monotonic) -> None:
        self._record, self.retry_s, self._clock = record, retry_s, clock
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._last_probe = 0.0
        self.refused = 0

    def __call__(self, action: str, **fields):
        if not self.is_open():
            raise AuditUnavailable(action)
        try:
            return self._record(action, **fields)
        except Exception as exc:
            self._close(exc)
            raise

    @property
    def writable(self) -> bool:
        return self.down_since is None

    def is_open(self) -> bool:
        """True when events can be written; while closed, probes the trail every ``retry_s``."""
        if self.down_since is None:
            return True
        with self._lock:
            now = self._clock()
            if self.down_since is None or now - self._last_probe < self.retry_s:
                return self.down_since is None
            self._last_probe = now
            try:
                self._record("audit.restored", actor="system", outage_s=round(now - self.down_since, 1),
                             refused=self.refused)
            except Exception:  # noqa: BLE001 - still failing: stay closed, probe again later
                return False
            log.warning("audit trail writable again after %.0f s; %d instance(s) were refused meanwhile",
                        now - self.down_since, self.refused)
            self.down_since, self.refused = None, 0
            return True

    def refuse(self) -> None:
        with self._lock:
            self.refused += 1

    def _close(self, exc: Exception) -> None:
        with self._lock:
            if self.down_since is None:
                self.down_since = self._last_probe = self._clock()
                log.error("audit trail cannot be written (%s): refusing C-STOREs with 0xA700 until it can",
                          type(exc).__name__)
