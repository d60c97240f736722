"""Typed errors of the DICOM node; each carries the DIMSE status it maps to.

This is the node's one table from error to protocol answer: the C-STORE handler returns
``exc.status`` and records ``exc.code``. The node imports nothing of medseg, so these are its
own hierarchy (same shape as ``medseg.core.exceptions.MedsegError``: a stable code and a message
that names attributes and rules, never patient values).

| error | DIMSE status |
|---|---|
| :class:`InvalidIdentifierError` (blank, long or non-UID identifier) | 0xC001 |
| :class:`InstanceRejected` (undecodable, inconsistent with the request, incomplete pixel data) | 0xC000, or 0xC002 / 0xC003 / 0xA900 as raised |
| :class:`OutOfResources` (free disk below the floor) | 0xA700 |
| :class:`NodeError` (the spool cannot be written) | 0xC004 (any other: 0x0110 processing failure) |
"""

from __future__ import annotations

#: C-STORE failure statuses we return (PS3.4 Table B.2-1); the 0xC0xx codes are our
#: "cannot understand" reasons, documented in the README table.
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
MISSING_UID = 0xC001
UID_MISMATCH = 0xC002
INCOMPLETE_PIXEL_DATA = 0xC003
CANNOT_WRITE = 0xC004
PROCESSING_FAILURE = 0x0110


class NodeError(Exception):
    """An instance or association the node refuses; ``status`` is the DIMSE status returned."""

    code = "node.error"
    status = PROCESSING_FAILURE

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidIdentifierError(NodeError):
    """A peer-supplied UID is blank, too long or not digits and dots."""

    code = "node.invalid_uid"
    status = MISSING_UID


class InstanceRejected(NodeError):
    """A dataset that cannot be stored as it is (unreadable, inconsistent, incomplete)."""

    code = "node.instance_rejected"
    status = CANNOT_UNDERSTAND


class OutOfResources(NodeError):
    """Free disk under the spool is below the configured floor."""

    code = "node.out_of_resources"
    status = OUT_OF_RESOURCES
