"""Benchmark: the audit trail on SQLite with durable commits (WAL, synchronous=FULL), in one run.

* appends/s, batched (``--batch`` events per transaction) and one event per transaction, for the
  hash-chained store against a peer: the same rows inserted into the same kind of table with
  SQLAlchemy and no chain (what the chain costs);
* query by study (the timeline query) latency with ``--events`` events stored (default 1,000,000);
* ``verify`` time per million events.

    python bench/audit.py [--events 1000000] [--batch 500] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert  # noqa: E402

from audit import AuditEvent, AuditLog  # noqa: E402
from audit.db import make_engine  # noqa: E402
from audit.query import AuditFilter, query  # noqa: E402
from audit.verify import verify  # noqa: E402

ACTIONS = ["dicom.instances.received", "study.series_complete", "job.queued", "job.started", "seg.created",
           "job.finished", "seg.sent"]


def make_events(n: int, studies: int, seed: int = 0) -> list[AuditEvent]:
    rng = random.Random(seed)
    return [AuditEvent(action=ACTIONS[i % len(ACTIONS)], actor="PACS1", study_uid=f"1.2.826.0.1.{rng.randrange(studies)}",
                       job_id=i // len(ACTIONS), model="ct-phantom:1.0.0", details={"count": 200, "attempt": 1})
            for i in range(n)]


def plain_table() -> tuple[MetaData, Table]:
    md = MetaData()
    return md, Table("plain_events", md, Column("seq", Integer, primary_key=True), Column("ts", String(32)),
                     Column("action", String(64)), Column("actor", String(64)), Column("study_uid", String(64)),
                     Column("job_id", Integer), Column("model", String(128)), Column("details", Text))


def append_rate(work: Path, n: int, batch: int) -> dict:
    import json

    events = make_events(n, 1000, seed=1)
    log = AuditLog(make_engine(f"sqlite:///{work / 'rate-chain.db'}"))
    log.create()
    started = time.perf_counter()
    for i in range(0, n, batch):
        log.append_many(events[i:i + batch])
    chain = n / (time.perf_counter() - started)

    engine = make_engine(f"sqlite:///{work / 'rate-plain.db'}")
    md, table = plain_table()
    md.create_all(engine)
    started = time.perf_counter()
    for i in range(0, n, batch):
        rows = [{"ts": "2026-01-01T00:00:00.000000Z", "action": e.action, "actor": e.actor, "study_uid": e.study_uid,
                 "job_id": e.job_id, "model": e.model, "details": json.dumps(e.details, sort_keys=True)}
                for e in events[i:i + batch]]
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
    plain = n / (time.perf_counter() - started)
    return {"batch": batch, "chain_per_s": chain, "plain_per_s": plain, "ratio": chain / plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medseg-bench-audit-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"host: {os.cpu_count()} CPU cores; SQLite WAL, synchronous=FULL; workdir {work}")

    rates = [append_rate(work, 20_000, args.batch), append_rate(work, 500, 1)]
    print(f"\n{'events/txn':>10} {'chained/s':>10} {'plain/s':>10} {'ratio':>6}")
    for r in rates:
        print(f"{r['batch']:>10} {r['chain_per_s']:>10.0f} {r['plain_per_s']:>10.0f} {r['ratio']:>6.2f}")

    log = AuditLog(make_engine(f"sqlite:///{work / 'big.db'}"))
    log.create()
    studies = max(1, args.events // 20)
    started = time.perf_counter()
    chunk = 50_000
    for i in range(0, args.events, chunk):
        events = make_events(min(chunk, args.events - i), studies, seed=i)
        for j in range(0, len(events), 5000):
            log.append_many(events[j:j + 5000])
    fill_s = time.perf_counter() - started
    print(f"\nstored {args.events} events in {fill_s:.1f} s ({args.events / fill_s:.0f}/s, batches of 5,000)")

    rng = random.Random(7)
    latencies = []
    for _ in range(200):
        uid = f"1.2.826.0.1.{rng.randrange(studies)}"
        t = time.perf_counter()
        rows = query(log, AuditFilter(study_uid=uid, limit=1000))
        latencies.append((time.perf_counter() - t) * 1000)
        assert all(r.event.study_uid == uid for r in rows)
    latencies.sort()
    print(f"query by study at {args.events} events: median {statistics.median(latencies):.2f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95)]:.2f} ms, max {latencies[-1]:.2f} ms (200 random studies)")

    t = time.perf_counter()
    result = verify(log)
    verify_s = time.perf_counter() - t
    print(f"verify: {'intact' if result.ok else result.problem}, {result.events} events in {verify_s:.1f} s "
          f"= {verify_s / (result.events / 1e6):.1f} s per million")


if __name__ == "__main__":
    main()
