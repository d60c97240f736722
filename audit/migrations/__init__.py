"""Alembic migrations of the audit trail's tables (``audit_events``, ``audit_head``), run by
:data:`audit.store.MIGRATIONS` (version table ``audit_alembic_version``)."""
