"""Issue 19: scale-out with the real parts of these machines — PostgreSQL (127.0.0.1:5432) for all
state, RabbitMQ (127.0.0.1:5672) delivering jobs through Celery — as separate processes: a node, an
API and two workers (``medseg serve --role ...``), a shared data directory, dcmtk on both ends.

Eight studies are pushed. While both workers run a job the model is rolled back: the running jobs
finish on their version, the queued ones run on the version rolled back to. Then one worker is
killed with SIGKILL in the middle of a job. Every study still ends with exactly one SEG at the
destination PACS, the killed worker's job is taken over by the other one, and the audit trail
verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pydicom
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import small_phantom, write_study
from tests.node_helpers import free_port, node_toml, postgres_database, rabbitmq_vhost, storescp, storescu, wait_for

pytestmark = pytest.mark.model

STUDIES = 8
NEW, OLD = "ct-phantom/2.1.0", "ct-phantom/2.0.0"  # the suite's default model (tests/conftest.py), and its predecessor


def _config(tmp_path: Path, db_url: str, broker_url: str, dest_port: int) -> tuple[Path, dict]:
    ports = {"dicom": free_port(), "node_http": free_port(), "api_http": free_port()}
    config = tmp_path / "medseg.toml"
    config.write_text(f"""
[service]
data_dir = "{tmp_path / 'shared'}"
database_url = "{db_url}"
broker_url = "{broker_url}"
poll_interval_s = 0.2
[auth]
enabled = false  # loopback only; authentication has its own tests (tests/test_auth.py)
""" + node_toml(ports['dicom'], dest_port))
    return config, ports


class Processes:
    """The roles as the README starts them, each its own OS process."""

    def __init__(self, config: Path, ports: dict, logs: Path) -> None:
        self.config, self.ports, self.logs, self.procs = config, ports, logs, {}
        logs.mkdir(exist_ok=True)

    def start(self, name: str, role: str, http_port: int | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        if http_port is not None:
            env["MEDSEG_SERVICE__HTTP_PORT"] = str(http_port)
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--role", role, "--config", str(self.config)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_node_api_and_two_workers_on_postgres_and_rabbitmq_survive_a_killed_worker(tmp_path):
    studies = []
    for i in range(STUDIES):
        folder = tmp_path / f"study{i}"
        datasets = write_study(folder, small_phantom(seed=1900 + i, shape=(40, 160, 160), spacing=(2.5, 1.5, 1.5),
                                                     n_tumors=2))
        studies.append((folder, str(datasets[0].StudyInstanceUID)))
    with postgres_database() as db_url, rabbitmq_vhost() as broker_url, storescp(tmp_path / "pacs") as dest_port:
        config, ports = _config(tmp_path, db_url, broker_url, dest_port)
        procs = Processes(config, ports, tmp_path / "logs")
        engine = create_engine(db_url)
        try:
            procs.start("node", "node", ports["node_http"])
            wait_for(lambda: _ready(ports["node_http"]), 120, what="the node to be ready")
            procs.start("api", "api", ports["api_http"])
            workers = [procs.start(f"worker{i}", "worker") for i in range(2)]
            wait_for(lambda: _ready(ports["api_http"]), 120, what="the API to be ready")

            def started_workers() -> int:
                with engine.connect() as conn:
                    return conn.execute(text("SELECT count(*) FROM audit_events WHERE action = 'service.started' "
                                             "AND details LIKE '%\"role\": \"worker\"%'")).scalar()
            wait_for(lambda: started_workers() == 2, 180, what="both workers to start")

            pushes = [threading.Thread(target=storescu, args=(ports["dicom"], sorted(folder.glob("*.dcm"))))
                      for folder, _ in studies]
            for t in pushes:
                t.start()
            for t in pushes:
                t.join()

            def running() -> list[tuple[int, str]]:
                with engine.connect() as conn:
                    return [tuple(r) for r in conn.execute(text(
                        "SELECT id, worker FROM jobs WHERE state = 'running' AND worker != '' ORDER BY id"))]

            # a rollback while both workers run jobs: those finish on their version, queued ones move
            wait_for(lambda: len(running()) == 2, 180, 0.05, what="both workers to run a job")
            rollback = subprocess.run([sys.executable, "-m", "medseg", "models", "rollback", "--to", OLD.split("/")[1], "--reason",
                                       "scale-out test", "--config", str(config)], capture_output=True, text=True)
            assert rollback.returncode == 0, rollback.stdout + rollback.stderr

            # kill -9 a worker while it runs a job: the one that holds the first running job
            job_id, worker = wait_for(lambda: (running() or [None])[0], 180, 0.05, what="a job to run")
            victim = next(p for p in workers if worker.endswith(f":{p.pid}"))
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()

            def all_sent() -> bool:
                with engine.connect() as conn:
                    states = conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all()
                return dict(states) == {"sent": STUDIES}
            wait_for(all_sent, 600, 1.0, what="every study's SEG to be sent")
            # the API process answers from the shared database
            listed = httpx.get(f"http://127.0.0.1:{ports['api_http']}/studies", timeout=10).json()["studies"]
            assert sorted(st["study_uid"] for st in listed) == sorted(uid for _, uid in studies)

            with engine.connect() as conn:
                killed = conn.execute(text("SELECT worker, attempts FROM jobs WHERE id = :id"), {"id": job_id}).one()
                takeover = conn.execute(text("SELECT details FROM audit_events WHERE action = 'job.started' "
                                             "AND job_id = :id ORDER BY seq"), {"id": job_id}).scalars().all()
                started = conn.execute(text("SELECT details FROM audit_events WHERE action = 'job.started'")).scalars()
                ran_on = {json.loads(d)["worker"] for d in started}
                rolled = conn.execute(text("SELECT seq FROM audit_events WHERE action = 'model.rolled_back'")).scalar()
                moved = json.loads(conn.execute(text("SELECT details FROM audit_events WHERE action = 'job.repointed'"))
                                   .scalar() or '{"job_ids": []}')["job_ids"]
                before = set(conn.execute(text("SELECT job_id FROM audit_events WHERE action = 'job.started' "
                                               "AND seq < :seq"), {"seq": rolled}).scalars())
                used = dict(conn.execute(text("SELECT id, model_used FROM jobs")).all())
            assert killed.worker != worker and killed.attempts == 2  # the other worker finished it
            assert f'"taken_over_from": "{worker}"' in takeover[-1]
            assert ran_on == {worker, killed.worker}  # both workers took jobs
            # no job changed version while it ran; the queued ones ran on the version rolled back to
            assert len(before) >= 2 and {used[j] for j in before} == {NEW}
            assert moved and {used[j] for j in moved} == {OLD}
            assert set(used.values()) == {NEW, OLD}
        finally:
            procs.stop_all()
            engine.dispose()

        # exactly one SEG per study at the destination PACS
        segs = [pydicom.dcmread(f, stop_before_pixels=True) for f in (tmp_path / "pacs").iterdir()]
        segs = [ds for ds in segs if ds.Modality == "SEG"]
        assert sorted(str(ds.StudyInstanceUID) for ds in segs) == sorted(uid for _, uid in studies)

        verify = subprocess.run([sys.executable, "-m", "medseg", "audit", "verify", "--config", str(config)],
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_role_needs_a_broker_and_a_job_must_end_within_the_brokers_ack_timeout(tmp_path, monkeypatch, capsys):
    from pydantic import ValidationError

    from medseg.config import ServiceSettings
    from tests.test_bad_input import run_cli

    monkeypatch.setenv("MEDSEG_SERVICE__DATA_DIR", str(tmp_path / "data"))
    for role in ("node", "api", "worker"):
        code, _, err = run_cli(["serve", "--role", role], capsys)
        assert code == 2 and "[serve.no_broker]" in err and "Traceback" not in err
    # RabbitMQ hands a message whose consumer held it past consumer_timeout to another worker
    ServiceSettings(broker_url="amqp://mq//", model_time_budget_s=600, broker_ack_timeout_s=1800)
    with pytest.raises(ValidationError, match="broker_ack_timeout_s"):
        ServiceSettings(broker_url="amqp://mq//", model_time_budget_s=700, broker_ack_timeout_s=1800)
    ServiceSettings(model_time_budget_s=700)  # no broker: no such limit
