"""Alembic's environment for the service tables (audit.migrate.run_env, medseg.app.schema)."""

from audit.migrate import run_env

run_env()
