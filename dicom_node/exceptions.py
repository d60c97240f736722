"""Typed errors of the DICOM node, each with the DIMSE status it maps to (STYLE.md #5)."""

from __future__ import annotations

from medseg.core.exceptions import MedsegError

#: C-STORE failure statuses we return (PS3.4 Table B.2-1); the 0xC0xx codes are our
#: "cannot understand" reasons, documented in the README table.
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
MISSING_UID = 0xC001
UID_MISMATCH = 0xC002
INCOMPLETE_PIXEL_DATA = 0xC003
CANNOT_WRITE = 0xC004
PROCESSING_FAILURE = 0x0110


class NodeError(MedsegError):
    """An instance or association the node refuses; ``status`` is the DIMSE status returned."""

    code = "node.error"
    status = PROCESSING_FAILURE

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        if status is not None:
            self.status = status


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


class SendError(NodeError):
    """A destination could not be reached or refused a SEG."""

    code = "node.send_failed"
