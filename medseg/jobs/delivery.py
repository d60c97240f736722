"""Sending SEGs to their destinations from the job table, with retries and exponential backoff.

Deliveries live in the job table, so a retry survives a restart. Attempt n (1-based) that
fails is retried after ``min(backoff * 2**(n-1), backoff_max)`` seconds; after
``send_retries`` retries the delivery fails, the job becomes ``failed`` (visible in the API,
metrics, and as an alert event), and the SEG stays in the results folder: it is never
dropped. A resend after a crash reuses the same SEG (same SOP Instance UID), so the PACS
sees one object, not two. The C-STORE itself is ``send`` (``dicom_node.scu.send_file``).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Callable

from medseg.config import DestinationSettings, NodeSettings
from medseg.core.loops import Ticker
from medseg.db import utcnow
from medseg.jobs.store import JobStore

log = logging.getLogger(__name__)

#: (SEG file, destination, our calling AE title) -> (ok, status, error)
Send = Callable[[Path, DestinationSettings, str], tuple[bool, str, str]]


class DeliveryLoop(Ticker):
    """Sends due deliveries from the job table; one thread (``wake()`` when a SEG is ready)."""

    thread_name, interval_s = "medseg-delivery", 0.5

    def __init__(self, jobs: JobStore, settings: NodeSettings, metrics, send: Send) -> None:
        self.jobs, self.settings, self.metrics, self.send = jobs, settings, metrics, send
        super().__init__()

    def route(self, calling_ae: str) -> list[str]:
        """Destination names for a study sent by ``calling_ae`` (``@sender``: the destination with that AE title)."""
        names = []
        for target in self.settings.send_to:
            if target == "@sender":
                names += [d.name for d in self.settings.destinations if d.ae_title == calling_ae]
            else:
                names.append(target)
        return list(dict.fromkeys(names))

    def tick(self) -> int:
        return self.deliver_due()

    def deliver_due(self) -> int:
        destinations = {d.name: d for d in self.settings.destinations}
        done = 0
        for delivery, job in self.jobs.due_deliveries():
            if self.stopping:
                break
            dest = destinations.get(delivery.destination)
            if dest is None:
                ok, status, error = False, "unknown destination", f"destination {delivery.destination} is no longer configured"
            else:
                try:
                    ok, status, error = self.send(Path(job.seg_path), dest, self.settings.ae_title)
                except Exception as exc:  # noqa: BLE001 - a send failure is a retry, not a crash
                    ok, status, error = False, "error", f"{type(exc).__name__} while sending"
            attempt = delivery.attempts + 1
            retry_at = None
            if not ok and attempt <= self.settings.send_retries and dest is not None:
                delay = min(self.settings.send_backoff_s * 2 ** (attempt - 1), self.settings.send_backoff_max_s)
                retry_at = utcnow() + dt.timedelta(seconds=delay)
            # records seg.sent / seg.send_failed (and the alert when retries are exhausted) with the state
            self.jobs.delivery_result(delivery.id, ok=ok, status=status, error=error, retry_at=retry_at)
            self.metrics.send_result(ok)
            if not ok and retry_at is None:
                log.warning("delivery %s failed after %d attempts; job visible as failed", delivery.id, attempt)
            done += 1
        return done
