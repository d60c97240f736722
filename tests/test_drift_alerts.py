"""Label-free drift monitors and the alert sinks (audit, log, webhook over real HTTP, Prometheus)."""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from medseg.app.context import build_context
from medseg.app.metrics import MonitoringCollector
from medseg.config import MonitoringSettings, ServiceSettings, Settings
from medseg.core.features import HU_BINS, study_features
from medseg.core.pipeline.segment import Lesion
from medseg.core.volume import Volume
from medseg.quality import drift
from medseg.quality.alerts import AlertManager
from medseg.quality.monitor import QualityMonitor
from medseg.quality.store import MonitoringStore
from medseg.training.ct_writer import ct_datasets
from tests.conftest import small_phantom
from tests.node_helpers import events, free_port


def features(**over) -> dict:
    base = {"hu_hist": list(np.full(len(HU_BINS) - 1, 1 / (len(HU_BINS) - 1))), "slice_thickness": 2.5,
            "spacing_z": 2.5, "spacing_xy": 0.8, "kvp": 120.0, "scanner": "ACME / CT1", "contrast": "not recorded",
            "missing_metadata": False, "lesions": 1, "volume_ml": 10.0, "empty": False, "confidence": 0.9,
            "entropy": 0.2}
    return {**base, **over}


def hist(center_hu: float) -> list[float]:
    centres = (HU_BINS[:-1] + HU_BINS[1:]) / 2
    h = np.exp(-0.5 * ((centres - center_hu) / 60.0) ** 2)
    return list(h / h.sum())


@pytest.mark.parametrize("monitor, base, shifted", [
    ("input.hu_histogram", {"hu_hist": hist(40)}, {"hu_hist": hist(240)}),
    ("input.slice_thickness", {"slice_thickness": 1.25}, {"slice_thickness": 5.0}),
    ("input.scanner", {"scanner": "ACME / CT1"}, {"scanner": "OTHER / XR9"}),
    ("input.missing_metadata", {"missing_metadata": False}, {"missing_metadata": True}),
    ("output.empty_rate", {"empty": False}, {"empty": True}),
    ("output.tumor_volume_ml", {"volume_ml": 10.0}, {"volume_ml": 2.0}),
])
def test_each_kind_of_statistic_detects_a_shift_and_not_noise(monitor, base, shifted):
    rng = np.random.default_rng(1)

    def jitter(f):
        return {k: (v * rng.uniform(0.95, 1.05) if isinstance(v, float) else v) for k, v in f.items()}

    baseline = [jitter(features(**base)) for _ in range(30)]
    same = [jitter(features(**base)) for _ in range(30)]
    moved = [jitter(features(**shifted)) for _ in range(30)]
    assert not drift.compare(monitor, baseline, same).drifted
    r = drift.compare(monitor, baseline, moved)
    assert r.drifted and r.value is not None and r.current_n == 30


def test_too_few_studies_is_not_drift():
    r = drift.compare("input.kvp", [features()] * 30, [features(kvp=80.0)] * 5)
    assert not r.drifted and r.value is None and "not enough" in r.note


def test_study_features_from_a_phantom_series():
    phantom = small_phantom(seed=5)
    headers = ct_datasets(phantom.image, patient_name="TEST^PHI_SENTINEL", patient_id="PHI-0001")
    volume = Volume(phantom.image.array, phantom.image.affine, tuple(headers))
    lesion = Lesion(label=1, volume_ml=4.0, centroid_lps_mm=(0, 0, 0), extent_mm=(1, 1, 1), mean_probability=0.8,
                    mean_entropy=0.3)
    f = study_features(volume, [lesion])
    assert abs(sum(f["hu_hist"]) - 1) < 1e-3 and f["lesions"] == 1 and f["confidence"] == 0.8
    assert f["spacing_z"] == pytest.approx(phantom.image.spacing[0], abs=1e-3)
    assert "PHI" not in json.dumps(f)
    empty = study_features(volume, [])
    assert empty["empty"] and empty["confidence"] is None


@contextmanager
def webhook(fail_first: int = 0):
    received, state = [], {"calls": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's spelling
            state["calls"] += 1
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            ok = state["calls"] > fail_first
            if ok:
                received.append(body)
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received, state
    finally:
        server.shutdown()


def manager(tmp_path, **monitoring):
    settings = Settings(service=ServiceSettings(data_dir=tmp_path), monitoring=MonitoringSettings(**monitoring))
    ctx = build_context(settings).prepare()
    store = MonitoringStore(ctx.engine)
    return store, AlertManager(store, settings.monitoring, ctx.auditor)


def test_drift_alert_fires_once_reaches_every_sink_and_resolves(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with webhook(fail_first=2) as (url, received, state):
        store, alerts = manager(tmp_path, drift_baseline=20, drift_window=20, webhook_url=url, webhook_backoff_s=0.01)
        monitor = QualityMonitor(store, alerts.settings, alerts)
        for i in range(20):
            monitor.observe_study(i, "ct-phantom/1.0.0", features(scanner="ACME / CT1"))
        for i in range(12):
            monitor.observe_study(100 + i, "ct-phantom/1.0.0", features(scanner="OTHER / XR9"))
        firing = store.alerts("firing")
        assert [(a.kind, a.name, a.model) for a in firing] == [("drift", "input.scanner", "ct-phantom")]
        assert len(events(tmp_path, "alert.drift_detected")) == 1  # once per episode, not per study
        assert "ALERT drift input.scanner firing" in caplog.text

        import time
        for _ in range(50):
            alerts.deliver_webhooks()
            if received:
                break
            time.sleep(0.02)
        assert state["calls"] == 3 and received[0]["name"] == "input.scanner" and received[0]["state"] == "firing"
        assert received[0]["evidence"]["statistic"] == "psi"

        registry = CollectorRegistry()
        registry.register(MonitoringCollector(monitor))
        assert 'medseg_alerts_firing{kind="drift",model="ct-phantom",name="input.scanner"} 1.0' in \
            generate_latest(registry).decode()

        for i in range(20):  # the scanner mix returns to the baseline's
            monitor.observe_study(200 + i, "ct-phantom/1.0.0", features(scanner="ACME / CT1"))
        assert not store.alerts("firing") and len(events(tmp_path, "alert.resolved")) == 1


def test_webhook_down_fails_visibly_after_its_retries(tmp_path):
    port = free_port()  # nothing listens here
    store, alerts = manager(tmp_path, webhook_url=f"http://127.0.0.1:{port}/x", webhook_retries=2,
                            webhook_backoff_s=0.01, webhook_timeout_s=1)
    alerts.fire("slo", "fn", "ct-phantom/1.0.0", {"why": "test"})
    import time
    for _ in range(100):
        alerts.deliver_webhooks()
        if store.alerts()[0].webhook_state == "failed":
            break
        time.sleep(0.02)
    row = store.alerts()[0]
    assert row.webhook_state == "failed" and row.webhook_attempts == 3 and row.webhook_error == "ConnectError"
    failed = events(tmp_path, "alert.webhook_failed")
    assert len(failed) == 1 and failed[0]["outcome"] == "failure"
    assert row.state == "firing"  # the alert itself stands


def test_drift_reads_only_its_baseline_and_window(tmp_path):
    store, _ = manager(tmp_path)
    for i in range(30):
        store.add_features(i, "ct-phantom/1.1.0" if i % 2 else "ct-phantom/1.1.0-rc", {"i": i})
    rows = [r.features["i"] for r in store.features("ct-phantom/", 5, 3)]
    assert rows == [0, 1, 2, 3, 4, 27, 28, 29]
    assert [r.features["i"] for r in store.features("ct-phantom/1.1.0", 2, 2)] == [1, 3, 27, 29]
    assert len(store.features("ct-phantom/1.1.0", 20, 5)) == 15  # fewer than the baseline: all of them
