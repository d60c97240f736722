"""Quality monitoring: review scores, rolling windows and SLOs, drift, alerts, reports.

Below the service layer: it knows the monitoring tables and the audit callable, never the
registry, the job queue or the network (the fallback action is injected by the service).
"""

__all__ = ["alerts", "drift", "monitor", "prom", "report", "scores", "slo", "store"]
