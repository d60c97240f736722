"""One background-loop shape for the service's threads (study assembly, SEG delivery, alert webhooks).

A :class:`Ticker` calls ``tick()`` every ``interval_s`` seconds, or at once after ``wake()``, on
a daemon thread until ``stop()``. An exception in ``tick()`` is logged by type (its message may
quote header values) and the loop goes on: what it failed on stays in the database and is retried.
"""

from __future__ import annotations

import abc
import logging
import threading

log = logging.getLogger(__name__)


class Ticker(abc.ABC):
    thread_name = "medseg-loop"
    interval_s = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def tick(self) -> object:
        """One round of the loop's work (subclasses: assembly, delivery, webhook outbox)."""

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the loop must survive; the work stays pending, retried
                log.error("%s: %s; will retry", self.thread_name, type(exc).__name__)
            self._wake.wait(self.interval_s)
            self._wake.clear()
