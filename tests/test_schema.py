"""Issue 19: the databases' schemas are versioned by Alembic migrations — the service tables and the
audit trail's, two histories — on SQLite and on the real PostgreSQL of these machines
(127.0.0.1:5432, trust auth; each test makes its own database).

A database of the last release before migrations (0.1.0: the tables its ``create_all`` made,
tests/data/schema) with data in it is refused by every command until ``medseg db upgrade``, which
recognises it, upgrades it and keeps the data; a new database is created at the newest revision;
what the migrations build is exactly what the ORM declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from audit import AuditEvent, AuditLog
from audit.chain import GENESIS
from audit.query import AuditFilter, query
from audit.store import MIGRATIONS as AUDIT
from medseg.app.schema import SERVICE, head, state
from medseg.db import make_engine
from tests.node_helpers import postgres_database
from tests.test_bad_input import run_cli

SCHEMA = Path(__file__).parent / "data" / "schema"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch):
    """(dialect, URL) of an empty database, and the service pointed at it (data dir in tmp_path)."""
    monkeypatch.setenv("MEDSEG_SERVICE__DATA_DIR", str(tmp_path / "data"))
    if request.param == "sqlite":
        (tmp_path / "data").mkdir()
        yield "sqlite", f"sqlite:///{tmp_path / 'data' / 'medseg.db'}"
        return
    with postgres_database() as url:
        monkeypatch.setenv("MEDSEG_SERVICE__DATABASE_URL", url)
        yield "postgresql", url


def _release_0_1_0(url: str, dialect: str) -> None:
    """The 0.1.0 tables, with a study in them: a series, its job (sent, with a SEG), a delivery,
    the registry's active version with its history, a scored review and an API token."""
    engine = make_engine(url)
    ddl = (SCHEMA / f"medseg-0.1.0-{dialect}.sql").read_text()
    rows = [
        "INSERT INTO series (id, study_uid, series_uid, calling_ae, patient, accession, state, revision, first_seen, note) "
        "VALUES (1, '1.2.3', '1.2.3.4', 'CT1', 'p-hash', 'A1', 'complete', 1, '2026-12-01 10:00:00', '')",
        "INSERT INTO jobs (id, study_uid, series_uid, model, model_used, revision, state, calling_ae, patient, accession,"
        " instances, created_at, updated_at, started_at, finished_at, attempts, error_code, error, seg_path,"
        " seg_series_uid, seg_sop_uid, result) VALUES (1, '1.2.3', '1.2.3.4', 'ct-tumor/3.0.0', 'ct-tumor/3.0.0', 1,"
        " 'sent', 'CT1', 'p-hash', 'A1', 60, '2026-12-01 10:00:00', '2026-12-01 10:01:00', '2026-12-01 10:00:05',"
        " '2026-12-01 10:00:50', 1, '', '', '/data/results/1/seg.dcm', '1.2.3.9', '1.2.3.9.1', '{\"lesion_count\": 1}')",
        "INSERT INTO deliveries (id, job_id, destination, state, attempts, next_attempt_at, last_status, last_error,"
        " sent_at) VALUES (1, 1, 'pacs', 'sent', 1, '2026-12-01 10:00:51', '0x0000', '', '2026-12-01 10:00:52')",
        "INSERT INTO model_registry (name, active, shadow, updated_at) VALUES ('ct-tumor', '3.0.0', '', '2026-12-01 09:00:00')",
        "INSERT INTO reviews (id, created_at, status, job_id, study_uid, series_uid, model, door, submitted_by, reviewer,"
        " accepted, correction_sop_uid, stored_path, site, scanner, dice, fn_rate, reference_lesions, detected_lesions,"
        " reference_lesions_ge10, detected_lesions_ge10, false_positive_lesions, hd95_mm, msd_mm, fp_volume_ml,"
        " volume_diff_ml, scores, note) VALUES (1, '2026-12-01 11:00:00', 'scored', 1, '1.2.3', '1.2.3.4',"
        " 'ct-tumor/3.0.0', 'cli', 'cli:rad', 'rad-1', TRUE, '', '', 'CT1', 'X / Y', 1.0, 0.0, 1, 1, 1, 1, 0, 0.0, 0.0,"
        " 0.0, 0.0, '{}', '')",
    ]
    with engine.begin() as conn:
        for statement in ddl.split(";"):
            if "CREATE" in statement:
                conn.exec_driver_sql(statement)
        for row in rows:
            conn.exec_driver_sql(row)
        conn.exec_driver_sql(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')")
    trail = AuditLog(engine)  # events chained as 0.1.0 wrote them (an unkeyed trail)
    trail.append_many([AuditEvent(action="job.queued", actor="system", job_id=1, study_uid="1.2.3"),
                       AuditEvent(action="seg.sent", actor="system", job_id=1, study_uid="1.2.3", destination="pacs"),
                       AuditEvent(action="review.scored", actor="cli:rad", model="ct-tumor:3.0.0", study_uid="1.2.3",
                                  details={"review_id": 1, "dice": 1.0, "fn_rate": 0.0})])
    engine.dispose()


def _differences(url: str) -> list:
    """What differs between the database and the tables the code declares, both histories."""
    engine = make_engine(url)
    diff = []
    with engine.connect() as conn:
        for history in (SERVICE, AUDIT):
            context = MigrationContext.configure(conn, opts={"include_name": history.include_name,
                                                             "version_table": history.version_table})
            diff += compare_metadata(context, history.metadata())
    engine.dispose()
    return diff


def test_a_new_database_is_created_at_the_newest_revision_exactly_as_the_orm_declares(database, capsys):
    dialect, url = database
    code, out, err = run_cli(["tokens", "create", "ops", "--role", "viewer"], capsys)  # a command that writes
    assert code == 0, err
    found = state(make_engine(url))
    assert found.current == head() and found.up_to_date
    assert _differences(url) == []
    code, out, _ = run_cli(["db", "status"], capsys)
    assert code == 0 and f"service tables: revision {head()}; this medseg needs {head()}: up to date" in out
    assert f"audit tables: revision {AUDIT.head}; this medseg needs {AUDIT.head}: up to date" in out


def test_a_release_0_1_0_database_with_data_is_refused_until_upgraded_and_keeps_its_data(database, tmp_path, capsys):
    dialect, url = database
    _release_0_1_0(url, dialect)
    assert state(make_engine(url)).current is None  # made by create_all: no version recorded

    # what the issue measured (OperationalError: no such column) is now one line saying what to do
    code, out, err = run_cli(["models", "list"], capsys)
    assert code == 2 and "[db.outdated_schema]" in err and "medseg db upgrade" in err and "Traceback" not in err
    code, out, err = run_cli(["serve", "--role", "all"], capsys)  # refused before anything listens
    assert code == 2 and "[db.outdated_schema]" in err and "Traceback" not in err
    code, out, _ = run_cli(["db", "status"], capsys)
    assert out.count("none (from before schema migrations)") == 2 and "run `medseg db upgrade`" in out

    code, out, err = run_cli(["db", "upgrade"], capsys)
    assert code == 0, err
    assert f"service tables upgraded from revision unversioned (before migrations) to {head()}" in out
    assert f"audit tables upgraded from revision unversioned (before migrations) to {AUDIT.head}" in out
    assert state(make_engine(url)).up_to_date and _differences(url) == []
    engine = make_engine(url)
    with engine.connect() as conn:
        job = conn.execute(text("SELECT state, seg_sop_uid, worker, result FROM jobs WHERE id = 1")).one()
        assert (job.state, job.seg_sop_uid, job.worker) == ("sent", "1.2.3.9.1", "")  # the new column: '' for old rows
        assert conn.execute(text("SELECT dice FROM reviews WHERE id = 1")).scalar() == 1.0
        assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar() == 1
    engine.dispose()

    code, out, err = run_cli(["models", "list"], capsys)
    assert code == 0, err
    assert "2.1.0" in out  # the suite's default model (tests/conftest.py), listed from the upgraded registry
    engine = make_engine(url)
    upgraded = query(AuditLog(engine), AuditFilter(action="service.schema_upgraded"))
    engine.dispose()
    assert [(e.event.details["service_revision"], e.event.details["audit_revision"]) for e in upgraded] == \
        [(f"unversioned -> {head()}", f"unversioned -> {AUDIT.head}")]
    code, out, _ = run_cli(["db", "upgrade"], capsys)
    assert code == 0 and "already up to date" in out
    # the 0.1.0 trail goes on: its events and the ones written since verify as one chain
    code, out, err = run_cli(["audit", "verify"], capsys)
    assert code == 0, out + err


def test_an_older_or_a_newer_schema_is_refused_with_the_reason(database, capsys):
    dialect, url = database
    _release_0_1_0(url, dialect)
    engine = make_engine(url)
    with engine.begin() as conn:  # a release from before the registry's shadow column (an older schema)
        conn.exec_driver_sql("ALTER TABLE model_registry DROP COLUMN shadow")
    code, _, err = run_cli(["db", "upgrade"], capsys)
    assert code == 2 and "[db.older_than_baseline]" in err and "model_registry.shadow" in err
    assert state(engine).current is None  # nothing was recorded or changed

    with engine.begin() as conn:  # a revision this code does not know: written by a newer medseg
        conn.exec_driver_sql("ALTER TABLE model_registry ADD COLUMN shadow VARCHAR(32) NOT NULL DEFAULT ''")
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('9999')")
    engine.dispose()
    code, _, err = run_cli(["models", "list"], capsys)
    assert code == 2 and "[db.newer_schema]" in err and "9999" in err


def test_the_baselines_are_what_release_0_1_0_created():
    """Revisions 0001 and a0001 create the tables and columns of the 0.1.0 DDL, no more and no less
    (so that an unversioned database is recognised as the baseline by exactly those)."""
    from sqlalchemy import inspect

    scratch = create_engine("sqlite://")
    with scratch.begin() as conn:
        for statement in (SCHEMA / "medseg-0.1.0-sqlite.sql").read_text().split(";"):
            if "CREATE" in statement:
                conn.exec_driver_sql(statement)
    inspector = inspect(scratch)
    release = {t: sorted(c["name"] for c in inspector.get_columns(t)) for t in inspector.get_table_names()}
    baselines = {**SERVICE.baseline_columns(), **AUDIT.baseline_columns()}
    assert {t: sorted(c) for t, c in baselines.items()} == release
    assert (SERVICE.baseline, AUDIT.baseline) == ("0001", "a0001")


def test_the_fast_start_check_knows_the_newest_revisions():
    """Each history's ``head`` (what the start check compares with, without loading the migrations)
    is the newest revision in its versions folder: a new migration must move it."""
    assert SERVICE.head == SERVICE.script_head() == head()
    assert AUDIT.head == AUDIT.script_head()
