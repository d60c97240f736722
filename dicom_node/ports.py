"""What the DICOM node needs from the service it runs in (ports; the service implements them).

The node stores instances durably and reports them; it knows nothing of jobs, models or
databases. ``medseg.app`` binds these to the job store's study assembly, the Prometheus
metrics and the audit trail.
"""

from __future__ import annotations

from typing import Protocol

from audit.recorder import Recorder

__all__ = ["NodeMetrics", "Pseudonymizer", "Recorder", "SeriesSink"]


class SeriesSink(Protocol):
    """Where stored instances go: study assembly decides when a series is complete."""

    def arrived(self, study_uid: str, series_uid: str, calling_ae: str, patient: str = "",
                accession: str = "") -> None:
        """A new instance of this series is on disk (``patient``: keyed hash of its patient ID)."""

    def refused(self, study_uid: str, series_uid: str, sop_uid: str) -> None:
        """An instance of this series was refused for lack of resources (0xA700): the series is
        incomplete until it arrives."""

    def association_ended(self, study_uid: str, series_uid: str, aborted: bool) -> None:
        """An association that delivered instances of this series ended: released normally, or
        aborted (the series may be cut off: incomplete until a later association is released)."""


class NodeMetrics(Protocol):
    """Counters of the node (they fail open: a metrics error never refuses an instance)."""

    def association(self, outcome: str) -> None: ...

    def instance_received(self, sop_class: str, new: bool) -> None: ...

    def instance_rejected(self, status: int) -> None: ...


class Pseudonymizer(Protocol):
    """Keyed hash of a patient ID: the only form of it that leaves the C-STORE handler."""

    def __call__(self, patient_id: str) -> str: ...
