"""Alembic's environment for the audit trail's tables (audit.migrate.run_env)."""

from audit.migrate import run_env

run_env()
