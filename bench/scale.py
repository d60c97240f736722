"""Benchmark: a burst of studies through today's embedded service against the scale-out roles with
1, 2 and 4 worker processes, in one run (issue 19).

16 studies of 60 x 512 x 512 (synthetic CT phantoms, 0.78 x 0.78 x 2.5 mm) are pushed at once, each
by its own dcmtk ``storescu``. Turnaround of a study = from the start of the burst to its SEG
received by the destination PACS (dcmtk ``storescp``; the job's ``sent`` state). Configurations:

* **embedded**: ``medseg serve`` as installed by default: SQLite, one worker thread in-process;
* **scale-out N**: ``medseg serve --role node`` + N x ``medseg serve --role worker`` on the
  machine's PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672), a shared data directory.

Prints per configuration the median and worst turnaround, the burst's makespan, the mean stage
times of a job (load, inference, SEG write) and ratios against embedded, then the arithmetic of
what a GPU host changes. The model is the suite's phantom model (ct-phantom 2.1.0) so that every
study has tumors to segment. No timing is asserted anywhere.

    python bench/scale.py [--studies 16] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import small_phantom, write_study  # noqa: E402 - after the path
from tests.node_helpers import free_port, postgres_database, rabbitmq_vhost, storescp, storescu, wait_for  # noqa: E402

MODEL = "ct-phantom/2.1.0"


def make_studies(work: Path, count: int) -> list[Path]:
    folders = []
    for i in range(count):
        folder = work / f"study{i:02d}"
        write_study(folder, small_phantom(seed=5100 + i, shape=(60, 512, 512), spacing=(2.5, 0.78, 0.78), n_tumors=3))
        folders.append(folder)
    return folders


def config(work: Path, dest_port: int, db_url: str = "", broker_url: str = "") -> tuple[Path, dict]:
    ports = {"dicom": free_port(), "http": free_port()}
    path = work / "medseg.toml"
    path.write_text(f"""
default_model = "{MODEL}"
[service]
data_dir = "{work / 'data'}"
database_url = "{db_url}"
broker_url = "{broker_url}"
http_port = {ports['http']}
poll_interval_s = 0.2
[auth]
enabled = false
[node]
port = {ports['dicom']}
allowed_calling_aets = ["BENCH"]
max_associations = {2 * 16 + 4}  # the burst's 16 associations at once (the default of 10 refuses the rest)
quiet_period_s = 1
disk_floor_mb = 0
[[node.destinations]]
name = "pacs"
ae_title = "BENCH"
host = "127.0.0.1"
port = {dest_port}
""")
    return path, ports


def serve(cfg: Path, role: str, log: Path, threads: int = 0) -> subprocess.Popen:
    """``threads``: torch's intra-op threads of a worker process (MEDSEG_CPU_THREADS); N workers on
    one host share its cores, as the README tells an operator to set it (0: the process's default)."""
    env = {**os.environ, **({"MEDSEG_CPU_THREADS": str(threads)} if threads else {})}
    return subprocess.Popen([sys.executable, "-m", "medseg", "serve", "--role", role, "--config", str(cfg)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115 - lives with the process


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def burst(folders: list[Path], dicom_port: int, db_url: str) -> dict:
    """Push every study at once; seconds from the start to each one's SEG sent, and stage times."""
    engine = create_engine(db_url)
    start = time.monotonic()
    failed: list[str] = []

    def push(folder: Path) -> None:
        if storescu(dicom_port, sorted(folder.glob("*.dcm")), calling_ae="BENCH").returncode:
            failed.append(folder.name)
    pushes = [threading.Thread(target=push, args=(f,)) for f in folders]
    for t in pushes:
        t.start()
    done: dict[int, float] = {}

    def all_sent() -> bool:
        if failed:
            raise SystemExit(f"storescu failed for {', '.join(failed)}")
        with engine.connect() as conn:
            for job_id, state in conn.execute(text("SELECT id, state FROM jobs")):
                if state == "sent" and job_id not in done:
                    done[job_id] = time.monotonic() - start
                if state == "failed":
                    raise SystemExit(f"job {job_id} failed")
        return len(done) == len(folders)
    wait_for(all_sent, 3600, 0.25, what="every SEG to be sent")
    for t in pushes:
        t.join()
    with engine.connect() as conn:
        results = [r for r in conn.execute(text("SELECT result FROM jobs")).scalars()]
    engine.dispose()
    stages: dict[str, list[float]] = {}
    for r in results:
        r = r if isinstance(r, dict) else __import__("json").loads(r)
        for k, v in (r.get("timings_s") or {}).items():
            stages.setdefault(k, []).append(float(v))
    times = sorted(done.values())
    return {"median_s": statistics.median(times), "worst_s": times[-1], "stages": {k: statistics.mean(v) for k, v in stages.items()}}


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()


def embedded(folders: list[Path], base: Path) -> dict:
    work = base / "embedded"
    work.mkdir()
    with storescp(work / "pacs", ae_title="BENCH") as dest:
        cfg, ports = config(work, dest)
        procs = [serve(cfg, "all", work / "serve.log")]
        try:
            wait_for(lambda: ready(ports["http"]), 300, what="medseg serve")
            return burst(folders, ports["dicom"], f"sqlite:///{work / 'data' / 'medseg.db'}")
        finally:
            stop(procs)


def scale_out(folders: list[Path], base: Path, workers: int) -> dict:
    work = base / f"scale-{workers}"
    work.mkdir()
    with postgres_database() as db, rabbitmq_vhost() as broker, storescp(work / "pacs", ae_title="BENCH") as dest:
        cfg, ports = config(work, dest, db, broker)
        procs = [serve(cfg, "node", work / "node.log")]
        try:
            wait_for(lambda: ready(ports["http"]), 300, what="the node")
            share = max(1, (os.cpu_count() or 1) // workers)  # the host's cores divided among its workers
            procs += [serve(cfg, "worker", work / f"worker{i}.log", threads=share) for i in range(workers)]
            engine = create_engine(db)

            def started() -> int:
                with engine.connect() as conn:
                    return conn.execute(text("SELECT count(*) FROM audit_events WHERE action = 'service.started' "
                                             "AND details LIKE '%\"role\": \"worker\"%'")).scalar()
            wait_for(lambda: started() == workers, 300, what="the workers")
            engine.dispose()
            return burst(folders, ports["dicom"], db)
        finally:
            stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    os.environ["MEDSEG_DEFAULT_MODEL"] = MODEL
    with tempfile.TemporaryDirectory(prefix="medseg-bench-scale-") as tmp:
        base = Path(tmp)
        print(f"writing {args.studies} studies of 60 x 512 x 512 ...", flush=True)
        folders = make_studies(base / "studies", args.studies)
        rows = {"embedded (1 thread, SQLite)": embedded(folders, base)}
        print(f"  embedded done: median {rows['embedded (1 thread, SQLite)']['median_s']:.1f} s", flush=True)
        for n in args.workers:
            rows[f"scale-out, {n} worker process{'es' if n > 1 else ''}"] = scale_out(folders, base, n)
            print(f"  {n} worker(s) done", flush=True)
    ref = rows["embedded (1 thread, SQLite)"]
    print(f"\n{args.studies} studies of 60 x 512 x 512 pushed at once; turnaround = burst start -> SEG at the PACS "
          f"(host: {os.cpu_count()} CPU cores, no GPU)\n")
    print("| configuration | median s | worst s | median vs embedded | worst vs embedded | inference s/job | total s/job |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['median_s']:.1f} | {r['worst_s']:.1f} | {ref['median_s'] / r['median_s']:.2f}x | "
              f"{ref['worst_s'] / r['worst_s']:.2f}x | {r['stages'].get('inference', 0):.1f} | {r['stages'].get('total', 0):.1f} |")
    print("\nmean stage times of a job (s):")
    for name, r in rows.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["stages"].items())))


if __name__ == "__main__":
    main()
