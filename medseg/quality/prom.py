"""Prometheus view of quality monitoring, read from the database at scrape time (so reviews
submitted by the CLI show up too). Fails open: a failing read yields no samples and a log line."""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)


class MonitoringCollector:
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
            for alert in self.monitor.store.alerts(state="firing"):
                firing.add_metric([alert.kind, alert.name, alert.model], 1.0)
        except Exception as exc:  # noqa: BLE001 - metrics fail open
            log.warning("monitoring metrics unavailable (%s)", type(exc).__name__)
        yield from (value, burn, breached, reviews, firing)
