"""The SLO fallback policy's guards, on the real registry, job table and audit trail (SQLite):
no rollback onto a version that breaches the same SLO, none of a version that is not active,
and alert-only SLOs never touch the registry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from medseg.app.context import build_context
from medseg.config import MonitoringSettings, ServiceSettings, Settings, SLOSettings
from medseg.quality.orm import Review
from medseg.quality.states import ReviewStatus
from tests.node_helpers import events


@pytest.fixture
def env(tmp_path):
    settings = Settings(service=ServiceSettings(data_dir=tmp_path), default_model="ct-phantom/1.0.0")
    ctx = build_context(settings).prepare()
    ctx.registry.switch("ct-phantom", "1.1.0", action="promote", actor="test", reason="setup")
    return ctx


def add_reviews(engine, model: str, fn: float, n: int = 5) -> None:
    from sqlalchemy.orm import Session

    with Session(engine) as s, s.begin():
        for i in range(n):
            s.add(Review(status=ReviewStatus.SCORED, job_id=i, study_uid=f"1.2.{i}", model=model, door="api", dice=1 - fn,
                         fn_rate=fn, reference_lesions=1, detected_lesions=int(fn < 0.5)))


def test_no_fallback_onto_a_version_that_breaches_too(env, tmp_path):
    registry, engine, monitor = env.registry, env.engine, env.monitor
    add_reviews(engine, "ct-phantom/1.0.0", fn=0.9)
    add_reviews(engine, "ct-phantom/1.1.0", fn=0.8)
    statuses = monitor.check_slos("ct-phantom/1.1.0")
    assert {s.slo for s in statuses if s.breached} == {"lesion-sensitivity", "voxel-fn-rate"}
    assert registry.active("ct-phantom") == "1.1.0"
    alert = next(a for a in monitor.store.alerts("firing") if a.name == "voxel-fn-rate")
    assert alert.action == "fallback failed: the rollback target ct-phantom/1.0.0 breaches SLO voxel-fn-rate too"
    failed = events(tmp_path, "alert.fallback_failed")
    assert len(failed) == 1 and failed[0]["model"] == "ct-phantom:1.1.0" and failed[0]["alert_id"] == alert.id
    assert not events(tmp_path, "model.rolled_back")


def test_a_version_that_does_not_serve_pages_nobody_and_is_not_rolled_back(env, tmp_path):
    """Late reviews of an old (or rolled-back) version breach its SLO: the status says so, but no
    alert opens and nothing is rolled back; it pages again only once it serves again."""
    registry, engine, monitor = env.registry, env.engine, env.monitor
    add_reviews(engine, "ct-phantom/1.0.0", fn=0.9)  # an old version, no longer active
    statuses = monitor.check_slos("ct-phantom/1.0.0")
    assert any(s.breached for s in statuses) and not monitor.store.alerts()
    assert registry.active("ct-phantom") == "1.1.0" and not events(tmp_path, "model.rolled_back")


def test_alert_policy_never_rolls_back_and_good_reviews_resolve(env, tmp_path):
    settings, registry, engine = env.settings, env.registry, env.engine
    settings = settings.model_copy(update={"monitoring": MonitoringSettings(
        slos=(SLOSettings(name="fn", metric="fn_rate", objective=0.15, policy="alert"),))})
    monitor = replace(env, settings=settings).monitor
    add_reviews(engine, "ct-phantom/1.1.0", fn=0.9)
    monitor.check_slos("ct-phantom/1.1.0")
    (alert,) = monitor.store.alerts("firing")
    assert alert.action == "" and registry.active("ct-phantom") == "1.1.0"
    add_reviews(engine, "ct-phantom/1.1.0", fn=0.0, n=40)  # the window fills with good reviews
    monitor.check_slos("ct-phantom/1.1.0")
    assert not monitor.store.alerts("firing") and len(events(tmp_path, "alert.resolved")) == 1


def test_report_cli_table_json_png_and_bad_since(env, tmp_path):
    import json
    import os
    import subprocess
    import sys

    engine = env.engine
    add_reviews(engine, "ct-phantom/1.1.0", fn=0.1, n=6)
    add_reviews(engine, "ct-phantom/1.0.0", fn=0.3, n=2)
    def run(*a):
        return subprocess.run([sys.executable, "-m", "medseg", "monitor", "report", *a], capture_output=True,
                              text=True, env={**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(tmp_path),
                                              "MEDSEG_DEFAULT_MODEL": "ct-phantom/1.0.0"})
    table = run("--png", str(tmp_path / "r.png"))
    assert table.returncode == 0, table.stderr
    assert "ct-phantom/1.1.0" in table.stdout and "0.100 [0.100, 0.100] n=6" in table.stdout
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads(run("--model", "ct-phantom:1.0.0", "--since", "7d", "--format", "json",
                          "--png", str(tmp_path / "r2.png")).stdout)
    assert [m["model"] for m in data["models"]] == ["ct-phantom/1.0.0"]
    assert data["models"][0]["last_reviews"]["reviews"] == data["models"][0]["last_days"]["reviews"] == 2
    assert data["models"][0]["period"]["reviews"] == 2 and data["models"][0]["window"]["fn_rate_mean"]["value"] == 0.3
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    quiet = subprocess.run([sys.executable, "-m", "medseg", "monitor", "report", "--format", "json"], cwd=elsewhere,
                           capture_output=True, text=True, env={**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(tmp_path)})
    assert quiet.returncode == 0 and list(elsewhere.iterdir()) == []  # no --png: no file, in the cwd or anywhere
    bad = run("--since", "last tuesday")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "monitor.invalid_since" in bad.stderr


@pytest.mark.parametrize("outcome", ["acts", "raises"])
def test_fallback_page_waits_for_the_action(env, tmp_path, outcome):
    """The webhook of a fallback alert is held until the policy has acted, so the page says what
    was done; a policy that raises is recorded as failed (and audited) and still releases it."""
    from tests.test_drift_alerts import webhook

    settings, engine = env.settings, env.engine
    with webhook() as (url, hooks, _):
        settings = settings.model_copy(update={"monitoring": MonitoringSettings(webhook_url=url, slos=(
            SLOSettings(name="fn", metric="fn_rate", objective=0.15, policy="fallback"),))})
        monitor = replace(env, settings=settings).monitor
        seen = {}

        def policy(model, status, alert_id):
            seen["state"] = monitor.store.alerts()[0].webhook_state
            seen["sent"] = monitor.alerts.deliver_webhooks()
            if outcome == "raises":
                raise RuntimeError("boom")
            return "rolled back (test)"

        monitor.fallback = policy
        add_reviews(engine, "ct-phantom/1.1.0", fn=0.9)
        monitor.check_slos("ct-phantom/1.1.0")
        assert seen == {"state": "held", "sent": 0}
        assert monitor.alerts.deliver_webhooks() == 1
        expected = "rolled back (test)" if outcome == "acts" else "fallback failed: RuntimeError"
        assert hooks[0]["action"] == expected
        assert bool(events(tmp_path, "alert.fallback_failed")) == (outcome == "raises")


def test_a_rollback_ends_the_alert_episode_and_a_re_promoted_bad_version_pages_and_falls_back_again(env, tmp_path):
    from medseg.app import operations
    from medseg.core.exceptions import RegistryError

    registry, engine, monitor = env.registry, env.engine, env.monitor
    add_reviews(engine, "ct-phantom/1.0.0", fn=0.0)
    add_reviews(engine, "ct-phantom/1.1.0", fn=0.9)
    monitor.check_slos("ct-phantom/1.1.0")
    assert registry.active("ct-phantom") == "1.0.0"
    first = next(a for a in monitor.store.alerts() if a.name == "voxel-fn-rate")
    assert first.state == "resolved" and first.evidence["resolved_with"]["closed_by"] == "rollback"
    assert first.evidence["affected_studies"] == [] and first.action.endswith("worklist: none")
    assert not [a for a in monitor.store.alerts("firing") if a.model == "ct-phantom/1.1.0"], "no episode left open"
    closed = [e for e in events(tmp_path, "alert.resolved") if e.get("closed_by") == "rollback"]
    assert {e["alert"] for e in closed} == {"voxel-fn-rate", "lesion-sensitivity"}

    # its own reviews still breach: promoting it back needs an explicit, audited override
    with pytest.raises(RegistryError) as refused:
        operations.promote(registry, env.auditor, "ct-phantom", "1.1.0", actor="cli:test", reason="retry", monitor=monitor)
    assert refused.value.code == "registry.open_breach" and registry.active("ct-phantom") == "1.0.0"
    assert events(tmp_path, "model.gate_failed")[-1]["reason_code"] == "registry.open_breach"
    operations.promote(registry, env.auditor, "ct-phantom", "1.1.0", actor="cli:test", reason="retry", monitor=monitor,
                       override_breach="vendor says the drift is fixed")
    override = events(tmp_path, "model.breach_override")
    assert len(override) == 1 and override[0]["reason"] == "vendor says the drift is fixed"
    assert {s["slo"] for s in override[0]["slos"]} == {"voxel-fn-rate", "lesion-sensitivity"}

    # the next bad review opens a new episode, which pages and falls back again
    add_reviews(engine, "ct-phantom/1.1.0", fn=0.9, n=1)
    monitor.check_slos("ct-phantom/1.1.0")
    assert registry.active("ct-phantom") == "1.0.0"
    episodes = [a for a in monitor.store.alerts() if a.name == "voxel-fn-rate" and a.model == "ct-phantom/1.1.0"]
    assert len(episodes) == 2 and episodes[0].id != episodes[1].id
    assert all(a.action.startswith("rolled back ct-phantom/1.1.0 -> ct-phantom/1.0.0") for a in episodes)
    assert len(events(tmp_path, "model.rolled_back")) == 2
