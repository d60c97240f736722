"""Issue 19: the service database's schema is versioned by Alembic migrations, on SQLite and on the
real PostgreSQL of these machines (127.0.0.1:5432, trust auth; each test makes its own database).

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

from audit import AuditLog
from audit.query import AuditFilter, query
from medseg.app.database import metadata
from medseg.app.schema import BASELINE, head, ours, state
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
    engine.dispose()


def _differences(url: str) -> list:
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_name": ours}), metadata())
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
    assert code == 0 and f"database revision {head()}; this medseg needs {head()}: up to date" in out


def test_a_release_0_1_0_database_with_data_is_refused_until_upgraded_and_keeps_its_data(database, tmp_path, capsys):
    dialect, url = database
    _release_0_1_0(url, dialect)
    assert state(make_engine(url)).current is None  # made by create_all: no version recorded

    # what the issue measured (OperationalError: no such column) is now one line saying what to do
    code, out, err = run_cli(["models", "list"], capsys)
    assert code == 2 and "[db.outdated_schema]" in err and "medseg db upgrade" in err and "Traceback" not in err
    code, out, _ = run_cli(["db", "status"], capsys)
    assert "none (a database from before schema migrations)" in out and "run `medseg db upgrade`" in out

    code, out, err = run_cli(["db", "upgrade"], capsys)
    assert code == 0, err
    assert f"database upgraded from revision unversioned (before migrations) to {head()}" in out
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
    assert [(e.event.details["from_revision"], e.event.details["to_revision"]) for e in upgraded] == \
        [("unversioned", head())]
    code, out, _ = run_cli(["db", "upgrade"], capsys)
    assert code == 0 and "already up to date" in out


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


def test_the_baseline_is_what_release_0_1_0_created():
    """Revision 0001 creates the tables and columns of the 0.1.0 DDL, no more and no less (so that
    an unversioned database is recognised as 0001 by exactly those)."""
    from medseg.app.schema import baseline_columns

    scratch = create_engine("sqlite://")
    with scratch.begin() as conn:
        for statement in (SCHEMA / "medseg-0.1.0-sqlite.sql").read_text().split(";"):
            if "CREATE" in statement:
                conn.exec_driver_sql(statement)
    from sqlalchemy import inspect
    inspector = inspect(scratch)
    release = {t: sorted(c["name"] for c in inspector.get_columns(t)) for t in inspector.get_table_names()}
    assert {t: sorted(c) for t, c in baseline_columns().items()} == release
    assert BASELINE == "0001"


def test_the_fast_start_check_knows_the_newest_revision():
    """``schema.HEAD`` (what the start check compares with, without loading the migrations) is the
    newest revision in medseg/app/migrations/versions: a new migration must move it."""
    from medseg.app.schema import HEAD

    assert head() == HEAD
