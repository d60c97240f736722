"""Evaluate SLOs after each review and drift after each study; fire, resolve and act on alerts.

The SLO policy ``fallback`` calls the ``fallback`` callable the service layer injects (the
models issue's rollback path: :func:`medseg.app.operations.rollback`), so this package never reaches
up into the registry or the job table.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from medseg.config import MonitoringSettings
from medseg.quality import drift, slo
from medseg.quality.alerts import AlertManager
from medseg.quality.store import MonitoringStore

log = logging.getLogger(__name__)
#: (model ref, SLO status, alert id) -> what was done, one line
Fallback = Callable[[str, slo.SLOStatus, int], str]


class QualityMonitor:
    def __init__(self, store: MonitoringStore, settings: MonitoringSettings, alerts: AlertManager,
                 fallback: Fallback | None = None, is_active: Callable[[str], bool] | None = None) -> None:
        self.store, self.settings, self.alerts, self.fallback = store, settings, alerts, fallback
        #: (name/version) -> whether it serves now; a version that does not (rolled back, never
        #: promoted) opens no SLO alert: its breach is in the SLO status and metrics, but it pages
        #: nobody until it serves again (then its next breach opens a new episode)
        self.is_active = is_active or (lambda model: True)

    def slo_status(self, model: str, now: dt.datetime | None = None) -> tuple[list, list[slo.SLOStatus]]:
        """(long window, status per SLO) of one model version (name/version)."""
        reviews = self.store.reviews(model=model, limit=self.settings.window_reviews)
        long, short = slo.windows(reviews, self.settings, now)
        return long, [slo.evaluate(s, long, short, self.settings) for s in self.settings.slos]

    def check_slos(self, model: str) -> list[slo.SLOStatus]:
        long, statuses = self.slo_status(model)
        for status in statuses:
            if status.breached and not self.is_active(model):
                continue
            if status.breached:
                evidence = {**status.as_dict(), "review_ids": [r.id for r in long]}
                acts = status.policy == "fallback" and self.fallback is not None
                alert = self.alerts.fire("slo", status.slo, model, evidence, status.policy, hold_webhook=acts)
                if alert is not None and acts:
                    self._act(model, status, alert.id)
            elif status.reviews >= self.settings.min_reviews and status.long.value is not None:
                self.alerts.resolve("slo", status.slo, model, status.as_dict())
        return statuses

    def _act(self, model: str, status: slo.SLOStatus, alert_id: int) -> None:
        """Run the fallback policy; whatever happens, record it on the alert (which releases its webhook)."""
        action = "fallback did not run"
        try:
            action = self.fallback(model, status, alert_id)
        except Exception as exc:  # noqa: BLE001 - the review is stored; the failed policy must be visible
            action = f"fallback failed: {type(exc).__name__}"
            log.error("SLO %s fallback for %s failed (%s)", status.slo, model, type(exc).__name__)
            self.alerts.audit("alert.fallback_failed", outcome="failure", actor="monitor", model=model,
                              alert_id=alert_id, reason=action)
        finally:
            self.alerts.record_action(alert_id, action)

    def drift_status(self, model: str) -> list[drift.DriftResult]:
        name, n, m = model.split("/")[0], self.settings.drift_baseline, self.settings.drift_window
        every = [r.features for r in self.store.features(f"{name}/", n, m)]
        mine = [r.features for r in self.store.features(model, n, m)] if "/" in model else every
        return drift.evaluate(every, mine, self.settings.drift_baseline, self.settings.drift_window)

    def check_drift(self, model: str) -> list[drift.DriftResult]:
        results = self.drift_status(model)
        for r in results:
            scope = model.split("/")[0] if r.monitor.startswith("input.") else model
            if r.drifted:
                why = f"{r.statistic} {r.value:.3f} vs threshold {r.threshold} (baseline {r.baseline_n}, current {r.current_n})"
                self.alerts.fire("drift", r.monitor, scope, {**r.as_dict(), "why": why})
            elif r.value is not None:
                self.alerts.resolve("drift", r.monitor, scope, r.as_dict())
        return results

    def observe_study(self, job_id: int, model: str, features: dict) -> None:
        """The worker segmented a study: record its features and re-check drift. Fails open: drift
        monitoring must never fail a clinical job (the error is logged)."""
        try:
            self.store.add_features(job_id, model, features)
            self.check_drift(model)
        except Exception as exc:  # noqa: BLE001 - monitoring fails open for the job; logged
            log.error("drift monitoring failed for job %s (%s)", job_id, type(exc).__name__)
