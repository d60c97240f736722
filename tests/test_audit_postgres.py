"""The audit store on the real PostgreSQL server of these machines (127.0.0.1:5432, database test):
concurrent writers from several processes' worth of connections, verify, tampering."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from audit import AuditEvent, AuditLog
from audit.db import make_engine
from audit.verify import verify
from tests.node_helpers import postgres_database


@pytest.fixture
def pg_log():
    """A trail in a database of its own on the real PostgreSQL (created by its migrations)."""
    with postgres_database() as url:
        engine = make_engine(url)
        log = AuditLog(engine)
        log.create()
        yield log
        engine.dispose()


def test_postgres_chain_under_concurrent_writers(pg_log):
    errors = []

    def writer(n):
        engine = make_engine(pg_log.engine.url.render_as_string(hide_password=False))  # one engine per writer: separate connections, as separate processes have
        own = AuditLog(engine)
        try:
            for i in range(50):
                own.append(AuditEvent(action="job.queued", actor=f"W{n}", job_id=i, study_uid="1.2.3"))
            own.append_many([AuditEvent(action="job.started", actor=f"W{n}", job_id=i) for i in range(50)])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            engine.dispose()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = verify(pg_log)
    assert result.ok and result.events == 600
    with pg_log.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone else' WHERE seq = 300"))
    broken = verify(pg_log)
    assert not broken.ok and broken.at_seq == 300
