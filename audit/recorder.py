"""What every part of the service writes to the audit trail through: ``record(action, **objects)``.

The service's implementation (``medseg.app.auditing.Auditor``) turns the keywords into an
:class:`audit.AuditEvent` and appends it; a failed write raises (audit fails closed).
Code that only records events depends on this protocol, not on the implementation.
"""

from __future__ import annotations

from typing import Any, Protocol


class Recorder(Protocol):
    def __call__(self, action: str, *, outcome: str = "success", actor: str = "system", connection: Any = None,
                 **fields: Any) -> Any:
        """Append one event: ``action`` from the vocabulary, the objects it concerns as keywords
        (study_uid, job_id, model, ...); ``connection`` writes inside the caller's transaction."""
