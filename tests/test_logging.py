"""The operator's log (medseg.app.logs): what `medseg serve` writes, in both formats, and what never
reaches it (patient data, study identifiers, library warnings' text)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from audit import AuditEvent
from medseg.app import logs
from medseg.config import LoggingSettings
from tests.conftest import PHI_ID, PHI_NAME, small_phantom, write_study
from tests.node_helpers import events, free_port, node_toml, storescp, storescu, wait_for


def stored(seq=7, **fields):
    return SimpleNamespace(seq=seq, event=AuditEvent(**fields))


def test_event_lines_carry_whitelisted_fields_only():
    level, line = logs.event_line(stored(action="job.finished", actor="system", job_id=3, model="ct-tumor:3.0.0",
                                         study_uid="1.2.826.0.1.99", series_uid="1.2.826.0.1.98",
                                         patient="a" * 64, details={"lesions": 2, "accession": "ACC-PHI"}))
    assert level == logging.INFO
    assert line == "job.finished success actor=system seq=7 job_id=3 model=ct-tumor:3.0.0"
    level, line = logs.event_line(stored(action="dicom.association.rejected", outcome="failure", actor="EVIL",
                                         details={"peer": "127.0.0.1", "reason": "calling AE title not allowed\nx"}))
    assert level == logging.WARNING and "reason=calling AE title not allowed x" in line and "peer=127.0.0.1" in line
    # a model change and an alert are notable even when they succeed
    assert logs.event_line(stored(action="model.rolled_back", model="m:1"))[0] == logging.WARNING
    assert logs.event_line(stored(action="alert.model_fallback"))[0] == logging.WARNING


def test_library_warnings_become_debug_records_without_their_text(caplog):
    caplog.set_level(logging.DEBUG, logger="medseg.warnings")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logs.route_warnings()
        warnings.warn(f'The string "{PHI_NAME}" is unlikely to represent the intended person name', UserWarning,
                      stacklevel=1)
        warnings.warn("torch.cuda.amp is deprecated", FutureWarning, stacklevel=1)
    records = [r for r in caplog.records if r.name == "medseg.warnings"]
    assert [r.levelno for r in records] == [logging.DEBUG] * 2
    assert "UserWarning raised at" in records[0].getMessage() and "FutureWarning" in records[1].getMessage()
    assert PHI_NAME not in caplog.text and "deprecated" not in caplog.text


def test_configure_levels_formats_and_one_handler(tmp_path):
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    other = logging.NullHandler()  # someone else's handler (a test's capture) stays
    root.addHandler(other)
    try:
        settings = LoggingSettings(level="INFO", format="json", file=tmp_path / "log" / "medseg.log")
        logs.configure(settings, serve=True)
        logs.configure(settings, serve=True)  # again: still one medseg handler
        assert [h.name for h in root.handlers].count(logs.HANDLER_NAME) == 1 and other in root.handlers
        assert root.level == logging.WARNING and logging.getLogger("medseg").level == logging.INFO
        logging.getLogger("highdicom.base").info("copy attributes from dataset 1.2.3")  # libraries: WARNING
        logging.getLogger("medseg.test").info("hello %s", "operator")
        logs.configure(settings)  # any other command: warnings and errors only
        assert logging.getLogger("audit").level == logging.WARNING
        logging.getLogger("medseg.test").info("not shown")
        logging.getLogger("medseg.test").warning("shown")
        # of the events, a command shows model changes and alerts; its own failure is its error line
        logs.log_event(stored(action="review.rejected", outcome="failure", reason_code="review.geometry"))
        logs.log_event(stored(action="model.rolled_back", model="ct-tumor:3.0.0"))
        lines = [json.loads(x) for x in (tmp_path / "log" / "medseg.log").read_text().splitlines()]
        assert [(x["levelname"], x["name"], x["message"]) for x in lines] == [
            ("INFO", "medseg.test", "hello operator"), ("WARNING", "medseg.test", "shown"),
            ("WARNING", "medseg.audit.notable", "model.rolled_back success actor=system seq=7 model=ct-tumor:3.0.0")]
        with pytest.raises(ValueError):
            LoggingSettings(level="TRACE")
    finally:
        for h in [h for h in root.handlers if h.name == logs.HANDLER_NAME]:
            root.removeHandler(h)
            h.close()
        root.removeHandler(other)
        root.setLevel(saved[0])


@pytest.mark.model
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_serve_logs_what_an_operator_needs_and_no_patient_data(tmp_path, fmt):
    study = tmp_path / "study"
    datasets = write_study(study, small_phantom(seed=31, shape=(24, 64, 64), n_tumors=1))
    uids = {str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID), *(d.SOPInstanceUID for d in datasets)}
    dicom_port, http_port, log_file = free_port(), free_port(), tmp_path / "medseg.log"
    with storescp(tmp_path / "pacs") as dest_port:
        config = tmp_path / "medseg.toml"
        config.write_text(f"""
[service]
data_dir = "{tmp_path / 'data'}"
http_port = {http_port}
poll_interval_s = 0.1
[auth]
enabled = false  # loopback only; the log is under test here
[logging]
format = "{fmt}"
file = "{log_file}"
""" + node_toml(dicom_port, dest_port))
        proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: _ready(http_port), 120, what="medseg serve to be ready")
            files = sorted(study.glob("*.dcm"))
            assert storescu(dicom_port, files).returncode == 0
            assert storescu(dicom_port, files[:1], calling_ae="INTRUDER").returncode != 0
            wait_for(lambda: events(tmp_path / "data", "seg.sent"), 120, what="the SEG to be sent")
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    text = log_file.read_text()
    if fmt == "json":
        records = [json.loads(line) for line in text.splitlines()]
        messages = [r["message"] for r in records]
        assert all({"asctime", "levelname", "name"} <= set(r) for r in records)
    else:
        messages = text.splitlines()
    joined = "\n".join(messages)
    for action in ("dicom.association.accepted", "dicom.association.rejected", "job.queued", "job.started",
                   "seg.created", "seg.sent", "job.finished", "audit anchor"):
        assert action in joined, f"{action} not in the log:\n{joined}"
    # the default lesion-sensitivity SLO (0.80) is above the phantom model's validated 0.53: said at start
    unattainable = next(m for m in messages if "alert.slo_unattainable" in m)
    assert "SLO lesion-sensitivity: objective 0.8 above the version's validated lesion_sensitivity 0.5263" in unattainable
    rejected = next(m for m in messages if "dicom.association.rejected" in m)
    assert "actor=INTRUDER" in rejected and ("WARNING" in rejected or fmt == "json")
    assert Path(tmp_path / "data" / "audit-anchors.jsonl").read_text().splitlines()[-1] in joined  # the stop anchor
    for secret in (PHI_NAME, PHI_ID, "PHI_SENTINEL", *uids):
        assert secret not in text and secret not in err and secret not in out
    assert "Warning" not in err  # library warnings are not the operator's console


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
