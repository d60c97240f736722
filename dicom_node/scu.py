"""Sending SEGs to destinations (C-STORE SCU), with retries and exponential backoff.

Deliveries live in the job table (:mod:`medseg.jobs.store`), so a retry survives a restart.
Attempt n (1-based) that fails is retried after ``min(backoff * 2**(n-1), backoff_max)``
seconds; after ``send_retries`` retries the delivery fails, the job becomes ``failed``
(visible in the API, metrics, and as an alert event), and the SEG stays in the
results folder: it is never dropped. A resend after a crash reuses the same SEG
(same SOP Instance UID), so the PACS sees one object, not two.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path
from typing import Callable

import pydicom
from pynetdicom import AE

from medseg.config import DestinationSettings, NodeSettings
from medseg.core.loops import Ticker
from medseg.jobs.store import JobStore, utcnow

log = logging.getLogger(__name__)

def send_file(path: Path, dest: DestinationSettings, calling_ae: str, timeout_s: float = 30.0) -> tuple[bool, str, str]:
    """C-STORE one file. Returns (ok, status, error): status is the DIMSE status in hex or a short word."""
    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    tls = None
    if dest.tls:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(dest.tls_ca) if dest.tls_ca else None)
        if dest.tls_cert:
            context.load_cert_chain(str(dest.tls_cert), str(dest.tls_key))
        tls = (context, dest.host)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls)
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "association aborted" if assoc.is_aborted else "no connection"
        return False, reason, f"{reason} by {dest.ae_title}@{dest.host}:{dest.port}"
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        return False, "no response", "no C-STORE response (timeout or connection lost)"
    code = int(status.Status)
    if code in (0x0000, 0xB000, 0xB007, 0xB006):  # success and the warnings that still store the object
        return True, f"0x{code:04X}", ""
    return False, f"0x{code:04X}", f"destination answered 0x{code:04X}"


class DeliveryLoop(Ticker):
    """Sends due deliveries from the job table; one thread (``wake()`` when a SEG is ready)."""

    thread_name, interval_s = "medseg-delivery", 0.5

    def __init__(self, jobs: JobStore, settings: NodeSettings, metrics,
                 send: Callable[..., tuple[bool, str, str]] = send_file) -> None:
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
