"""Prometheus metrics of the service, served at ``/metrics``: the service's own counters
(:class:`ServiceMetrics`) and the quality-monitoring view read from the database at scrape time
(:class:`MonitoringCollector`, so reviews submitted by the CLI show up too).

Metrics fail open: a failing read yields no samples (or NaN) and a log line, never an error.
"""

from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from medseg.quality.states import AlertState

log = logging.getLogger(__name__)


class ServiceMetrics:
    """One registry per service instance (tests run several in one process)."""

    def __init__(self, queue_depth: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.instances = Counter("medseg_instances_received", "DICOM instances stored", ["sop_class"], registry=r)
        self.duplicates = Counter("medseg_instances_duplicate", "instances already in the spool (acknowledged, not rewritten)",
                                  registry=r)
        self.rejected = Counter("medseg_instances_rejected", "C-STORE requests refused", ["status"], registry=r)
        self.associations = Counter("medseg_associations", "association requests", ["result"], registry=r)
        self.jobs = Counter("medseg_jobs", "jobs finished by outcome", ["outcome"], registry=r)
        self.job_duration = Histogram("medseg_job_duration_seconds", "segmentation job duration", registry=r,
                                      buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
        self.fallbacks = Counter("medseg_model_fallbacks", "studies processed by a previous model version",
                                 registry=r)
        self.sends = Counter("medseg_seg_sends", "SEG send attempts", ["result"], registry=r)
        self.queue = Gauge("medseg_queue_depth", "queued jobs", registry=r)
        if queue_depth is not None:
            self.queue.set_function(lambda: _fail_open(queue_depth))

    def instance_received(self, sop_class: str, new: bool) -> None:
        self.instances.labels(sop_class).inc()
        if not new:
            self.duplicates.inc()

    def instance_rejected(self, status: int) -> None:
        self.rejected.labels(f"0x{status:04X}").inc()

    def association(self, result: str) -> None:
        self.associations.labels(result).inc()

    def job_finished(self, outcome: str, seconds: float | None) -> None:
        self.jobs.labels(outcome).inc()
        if seconds is not None:
            self.job_duration.observe(seconds)

    def send_result(self, ok: bool) -> None:
        self.sends.labels("success" if ok else "failure").inc()


def _fail_open(read: Callable[[], int]) -> float:
    try:
        return float(read())
    except Exception:  # noqa: BLE001 - a metric read must never break a scrape
        log.warning("metric read failed", exc_info=True)
        return float("nan")


class MonitoringCollector:
    """Quality monitoring as gauges: SLO values, burn rates, breaches, window sizes, firing alerts."""

    def __init__(self, monitor) -> None:
        self.monitor = monitor

    def collect(self):
        value = GaugeMetricFamily("medseg_slo_value", "SLO metric over the long window", labels=["model", "slo"])
        burn = GaugeMetricFamily("medseg_slo_burn_rate", "error-budget burn rate", labels=["model", "slo", "window"])
        breached = GaugeMetricFamily("medseg_slo_breached", "1 when the SLO is breached", labels=["model", "slo"])
        reviews = GaugeMetricFamily("medseg_reviews_window", "reviews in the long window", labels=["model"])
        firing = GaugeMetricFamily("medseg_alerts_firing", "alerts firing", labels=["kind", "name", "model"])
        try:
            for model in self.monitor.store.models_reviewed():
                long, statuses = self.monitor.slo_status(model)
                reviews.add_metric([model], len(long))
                for st in statuses:
                    if st.long.value is not None:
                        value.add_metric([model, st.slo], st.long.value)
                    for window, b in (("long", st.burn_long), ("short", st.burn_short)):
                        if b is not None:
                            burn.add_metric([model, st.slo, window], b)
                    breached.add_metric([model, st.slo], float(st.breached))
            for alert in self.monitor.store.alerts(state=AlertState.FIRING):
                firing.add_metric([alert.kind, alert.name, alert.model], 1.0)
        except Exception as exc:  # noqa: BLE001 - metrics fail open
            log.warning("monitoring metrics unavailable (%s)", type(exc).__name__)
        yield from (value, burn, breached, reviews, firing)
