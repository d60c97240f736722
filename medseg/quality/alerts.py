"""Alerts and their sinks: the audit trail, the application log, a webhook, Prometheus.

An alert is one episode of (kind, name, model): it opens once (``fire``) and stays open while
the condition holds (no repeated pages), then ``resolve`` closes it. Opening and closing commit
with their audit event in one transaction (fail closed); the log line follows; the webhook is an
outbox (``webhook_state`` pending) delivered with retries and exponential backoff by
:meth:`AlertManager.deliver_webhooks` — the service runs it in a loop, the CLI once — so a slow or
dead webhook never blocks a review or the rollback it may trigger. Prometheus reads the table at
scrape time (``medseg.app.metrics.MonitoringCollector``). Alert payloads carry UIDs and numbers, never PHI.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

import httpx
from sqlalchemy import select

from medseg.config import MonitoringSettings
from medseg.core.loops import Ticker
from medseg.db import utcnow
from medseg.quality.orm import Alert
from medseg.quality.states import AlertState, WebhookState
from medseg.quality.store import MonitoringStore

log = logging.getLogger("medseg.alerts")
ACTIONS = {"slo": "alert.slo_breached", "drift": "alert.drift_detected"}


class AlertManager:
    def __init__(self, store: MonitoringStore, settings: MonitoringSettings, audit, client: httpx.Client | None = None):
        self.store, self.settings, self.audit = store, settings, audit
        self.client = client
        self._lock = threading.Lock()

    def open(self, kind: str, name: str, model: str) -> Alert | None:
        with self.store.session() as s:
            return s.scalar(select(Alert).where(Alert.kind == kind, Alert.name == name, Alert.model == model,
                                                Alert.state == AlertState.FIRING))

    def latest(self, kind: str, name: str, model: str) -> Alert | None:
        """The newest alert of (kind, name, model), firing or not (a fallback closes its own alert)."""
        with self.store.session() as s:
            return s.scalar(select(Alert).where(Alert.kind == kind, Alert.name == name, Alert.model == model)
                            .order_by(Alert.id.desc()).limit(1))

    def fire(self, kind: str, name: str, model: str, evidence: dict, policy: str = "alert",
             hold_webhook: bool = False) -> Alert | None:
        """Open an alert; None if one is already firing for (kind, name, model) (then ``evidence`` is kept
        as its ``latest``, beside the evidence that opened it). ``hold_webhook``: the policy acts first;
        :meth:`record_action` releases the webhook, so the page says what was done."""
        with self._lock, self.store.session() as s, s.begin():
            current = s.scalar(select(Alert).where(Alert.kind == kind, Alert.name == name, Alert.model == model,
                                                   Alert.state == AlertState.FIRING))
            if current is not None:  # keep the evidence that opened it; the newest goes beside it
                current.evidence = {**current.evidence, "latest": evidence}
                return None
            alert = Alert(kind=kind, name=name, model=model, state=AlertState.FIRING, policy=policy, evidence=evidence,
                          webhook_state=(WebhookState.HELD if hold_webhook else WebhookState.PENDING)
                          if self.settings.webhook_url else WebhookState.NONE)
            s.add(alert)
            s.flush()
            self.audit(ACTIONS[kind], connection=s.connection(), outcome="failure", actor="monitor", alert_id=alert.id,
                       alert=name, model=model or None, policy=policy, evidence=evidence)
        log.warning("ALERT %s %s firing for %s: %s", kind, name, model or "all models", evidence.get("why", ""))
        return alert

    def close_for_rollback(self, model: str, *, to: str, actor: str, reason: str) -> list[Alert]:
        """A rollback ends the episodes of the rolled-back version's SLO alerts (``alert.resolved``,
        ``closed_by: rollback``): should it become active again, its next breach pages anew."""
        with self.store.session() as s:
            names = list(s.scalars(select(Alert.name).where(Alert.kind == "slo", Alert.model == model,
                                                            Alert.state == AlertState.FIRING)))
        evidence = {"closed_by": "rollback", "rolled_back_to": to, "actor": actor, "reason": reason}
        return [a for a in (self.resolve("slo", n, model, evidence) for n in names) if a is not None]

    def annotate(self, alert_id: int, **evidence) -> None:
        """Add to an alert's evidence (e.g. the studies a fallback affected) before its webhook goes."""
        with self.store.session() as s, s.begin():
            alert = s.get(Alert, alert_id)
            alert.evidence = {**alert.evidence, **evidence}

    def record_action(self, alert_id: int, action: str) -> None:
        with self.store.session() as s, s.begin():
            alert = s.get(Alert, alert_id)
            alert.action = action
            if alert.webhook_state == WebhookState.HELD:
                alert.webhook_state, alert.webhook_next_at = WebhookState.PENDING, utcnow()

    def resolve(self, kind: str, name: str, model: str, evidence: dict) -> Alert | None:
        with self._lock, self.store.session() as s, s.begin():
            alert = s.scalar(select(Alert).where(Alert.kind == kind, Alert.name == name, Alert.model == model,
                                                 Alert.state == AlertState.FIRING))
            if alert is None:
                return None
            alert.state, alert.resolved_at = AlertState.RESOLVED, utcnow()
            alert.evidence = {**alert.evidence, "resolved_with": evidence}
            if self.settings.webhook_url and alert.webhook_state in (WebhookState.SENT, WebhookState.NONE):
                alert.webhook_state, alert.webhook_attempts, alert.webhook_next_at = WebhookState.PENDING, 0, utcnow()
            self.audit("alert.resolved", connection=s.connection(), actor="monitor", alert_id=alert.id, alert=name,
                       model=model or None, kind=kind, closed_by=evidence.get("closed_by"), reason=evidence.get("reason"))
        log.info("alert %s %s resolved for %s", kind, name, model or "all models")
        return alert

    # -- webhook outbox ------------------------------------------------------------------------
    def deliver_webhooks(self, now: dt.datetime | None = None) -> int:
        """One attempt for every due pending webhook; returns how many were delivered."""
        if not self.settings.webhook_url:
            return 0
        now = now or utcnow()
        with self.store.session() as s:
            due = list(s.scalars(select(Alert).where(Alert.webhook_state == WebhookState.PENDING, Alert.webhook_next_at <= now)
                                 .order_by(Alert.id)))
        sent = 0
        for alert in due:
            error = self._post(payload(alert))
            with self.store.session() as s, s.begin():
                row = s.get(Alert, alert.id)
                row.webhook_attempts += 1
                if error is None:
                    row.webhook_state, row.webhook_error = WebhookState.SENT, ""
                    sent += 1
                elif row.webhook_attempts > self.settings.webhook_retries:
                    row.webhook_state, row.webhook_error = WebhookState.FAILED, error
                    self.audit("alert.webhook_failed", connection=s.connection(), outcome="failure", actor="monitor",
                               alert_id=row.id, alert=row.name, attempts=row.webhook_attempts, reason=error)
                else:
                    row.webhook_error = error
                    delay = self.settings.webhook_backoff_s * 2 ** (row.webhook_attempts - 1)
                    row.webhook_next_at = utcnow() + dt.timedelta(seconds=delay)
        return sent

    def _post(self, body: dict) -> str | None:
        client = self.client or httpx.Client(timeout=self.settings.webhook_timeout_s)
        try:
            response = client.post(self.settings.webhook_url, json=body)
            return None if response.is_success else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            return type(exc).__name__
        finally:
            if self.client is None:
                client.close()


def payload(alert: Alert) -> dict:
    """The webhook body (also what `GET /monitoring/summary` lists as alerts)."""
    return {"id": alert.id, "kind": alert.kind, "name": alert.name, "model": alert.model, "state": alert.state,
            "policy": alert.policy, "opened_at": alert.opened_at.isoformat() + "Z",
            "resolved_at": alert.resolved_at.isoformat() + "Z" if alert.resolved_at else None,
            "evidence": alert.evidence, "action": alert.action, "source": "medseg"}


class WebhookLoop(Ticker):
    """The service's thread that drains the webhook outbox (started only when a webhook is set)."""

    thread_name, interval_s = "medseg-webhooks", 1.0

    def __init__(self, alerts: AlertManager) -> None:
        self.alerts = alerts
        super().__init__()

    def start(self) -> None:
        if self.alerts.settings.webhook_url:
            super().start()

    def tick(self) -> int:
        return self.alerts.deliver_webhooks()
