"""The append-only, tamper-evident audit trail: events, hash chain, queries, exports.

Depends on nothing in medseg (docs/architecture.md): SQLAlchemy and the standard library only.
Everything else writes to it through :class:`audit.store.AuditLog`.
"""

from audit.exceptions import AuditError, AuditWriteError, UnknownActionError
from audit.schemas import AuditEvent, StoredEvent
from audit.store import AuditLog
from audit.vocabulary import ACTIONS

__all__ = ["ACTIONS", "AuditError", "AuditEvent", "AuditLog", "AuditWriteError", "StoredEvent", "UnknownActionError"]
