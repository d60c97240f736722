"""Typed errors of the audit trail."""

from __future__ import annotations


class AuditError(Exception):
    code = "audit.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class UnknownActionError(AuditError):
    """An action name that is not in the vocabulary (audit/vocabulary.py)."""

    code = "audit.unknown_action"


class AuditWriteError(AuditError):
    """The event could not be stored; the action it records must fail with it (audit fails closed)."""

    code = "audit.write_failed"


class PatientDataError(AuditError):
    """An event carried a patient name or a raw patient identifier."""

    code = "audit.patient_data"


class SchemaError(AuditError):
    """A database's schema is not one this code can use or upgrade (audit.migrate)."""

    code = "db.schema"
