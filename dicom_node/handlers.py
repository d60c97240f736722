"""pynetdicom event handlers: plain functions, collaborators bound through handler arguments.

The error boundary: a :class:`NodeError` becomes its DIMSE status and an
audit event; anything unexpected becomes 0xC000 with the exception *type* recorded
(exception messages can quote header values, so they are not). Nothing escapes into
the association thread.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from pydicom.uid import UID

from dicom_node.exceptions import CANNOT_UNDERSTAND, INCOMPLETE_PIXEL_DATA, UID_MISMATCH, InstanceRejected, NodeError
from dicom_node.gate import AuditGate
from dicom_node.ports import NodeMetrics, Pseudonymizer, Recorder, SeriesSink
from dicom_node.spool import Spool, validate_uid

log = logging.getLogger(__name__)
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700


@dataclass
class _SeriesTally:
    sop_classes: set[str] = field(default_factory=set)
    transfer_syntaxes: set[str] = field(default_factory=set)
    patient: str = ""
    received: int = 0
    duplicates: int = 0


class AssociationTally:
    """Instances received per association and series, recorded once when the association ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_assoc: dict[int, dict[tuple[str, str], _SeriesTally]] = defaultdict(lambda: defaultdict(_SeriesTally))

    def add(self, assoc, study: str, series: str, sop_class: str, syntax: str, new: bool, patient: str) -> None:
        with self._lock:
            t = self._by_assoc[id(assoc)][(study, series)]
            t.patient = patient
            t.sop_classes.add(sop_class)
            t.transfer_syntaxes.add(syntax)
            t.received += 1
            t.duplicates += 0 if new else 1

    def flush(self, assoc, record: Recorder, ended: str = "released") -> list[tuple[str, str]]:
        """Record what the association delivered (``ended``: released or aborted); returns its series."""
        with self._lock:
            series = self._by_assoc.pop(id(assoc), {})
        for (study, series_uid), t in series.items():
            record("dicom.instances.received", actor=assoc.requestor.ae_title, study_uid=study, series_uid=series_uid,
                   patient=t.patient, peer=assoc.requestor.address, count=t.received, duplicates=t.duplicates, sop_classes=sorted(t.sop_classes),
                   transfer_syntaxes=sorted(t.transfer_syntaxes), ended=ended)
        return list(series)


def handle_echo(event) -> int:
    return SUCCESS


def handle_store(event, spool: Spool, assembly: SeriesSink, tally: AssociationTally, record: AuditGate,
                 metrics: NodeMetrics, pseudonymize: Pseudonymizer, refuse=lambda: None) -> int:
    """Store one instance durably, or refuse it with a specific status (README "C-STORE statuses").
    While the audit trail cannot be written (:mod:`dicom_node.gate`), or the service says it cannot
    continue (``refuse()``: e.g. no worker left to process it), nothing is stored: 0xA700."""
    if not record.is_open():
        record.refuse()
        metrics.instance_rejected(OUT_OF_RESOURCES)
        return OUT_OF_RESOURCES
    try:
        why = refuse()
        if why:
            metrics.instance_rejected(OUT_OF_RESOURCES)
            record("dicom.instance.rejected", outcome="failure", actor=event.assoc.requestor.ae_title,
                   status=f"0x{OUT_OF_RESOURCES:04X}", reason=why, code="node.cannot_continue",
                   sop_class=str(event.request.AffectedSOPClassUID))
            return OUT_OF_RESOURCES
        return _store(event, spool, assembly, tally, record, metrics, pseudonymize)
    except Exception as exc:  # noqa: BLE001 - recording the outcome failed (the trail went down): refuse
        log.error("C-STORE outcome could not be recorded: %s", type(exc).__name__)
        record.refuse()
        metrics.instance_rejected(OUT_OF_RESOURCES)
        return OUT_OF_RESOURCES


def _store(event, spool: Spool, assembly: SeriesSink, tally: AssociationTally, record: Recorder,
           metrics: NodeMetrics, pseudonymize: Pseudonymizer) -> int:
    calling_ae = event.assoc.requestor.ae_title
    sop_class = str(event.request.AffectedSOPClassUID)
    ids = None
    try:
        ds = _dataset(event)
        ids = study, series, sop = check_instance(ds, event.request)
        spool.check_space()  # after the UIDs are known: a refused instance leaves its series incomplete
        _check_pixel_data(ds, event.context.transfer_syntax)
        stored = spool.store(study, series, sop, lambda f: f.write(event.encoded_dataset()))  # as received
        patient = pseudonymize(str(ds.get("PatientID", "") or ""))  # only the keyed hash leaves this line
    except NodeError as exc:
        metrics.instance_rejected(exc.status)
        record("dicom.instance.rejected", outcome="failure", actor=calling_ae, status=f"0x{exc.status:04X}",
               reason=exc.message, code=exc.code, sop_class=sop_class,
               sop_uid=_safe(event.request.AffectedSOPInstanceUID))
        if exc.status == OUT_OF_RESOURCES:
            record("alert.disk_floor", outcome="failure", actor="system", reason=exc.message,
                   free_mb=spool.free_bytes() // 2**20)
            if ids is not None:
                assembly.refused(*ids)
        return exc.status
    except Exception as exc:  # noqa: BLE001 - the error boundary: never into the association thread
        log.error("C-STORE handler failed: %s", type(exc).__name__)  # the type only: messages can quote values
        metrics.instance_rejected(CANNOT_UNDERSTAND)
        record("dicom.instance.rejected", outcome="failure", actor=calling_ae, status=f"0x{CANNOT_UNDERSTAND:04X}",
               reason=f"internal error ({type(exc).__name__})", code="node.internal", sop_class=sop_class)
        return CANNOT_UNDERSTAND
    tally.add(event.assoc, study, series, sop_class, str(event.context.transfer_syntax), stored.new, patient)
    metrics.instance_received(sop_class, stored.new)
    if stored.new:
        assembly.arrived(study, series, calling_ae, patient, str(ds.get("AccessionNumber", "") or "")[:16])
    return SUCCESS


def _dataset(event):
    try:
        ds = event.dataset
        ds.get("SOPInstanceUID")  # converts the first values: a corrupt header fails here, not later
        return ds
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the dataset is unreadable
        raise InstanceRejected(f"dataset cannot be decoded ({type(exc).__name__}); truncated or corrupt") from None


def check_instance(ds, request) -> tuple[str, str, str]:
    """The UIDs needed to file and reference the instance, checked against the command.

    Blank or missing UIDs are refused (0xC001 naming the attribute): an instance we cannot
    reference cannot be segmented or cited by a SEG. Image objects must carry complete pixel
    data (0xC003, see ``_check_pixel_data``) so a truncated transfer is refused now, not in the job.
    """
    study = validate_uid(getattr(ds, "StudyInstanceUID", None), "StudyInstanceUID")
    series = validate_uid(getattr(ds, "SeriesInstanceUID", None), "SeriesInstanceUID")
    sop = validate_uid(getattr(ds, "SOPInstanceUID", None), "SOPInstanceUID")
    sop_class = validate_uid(getattr(ds, "SOPClassUID", None), "SOPClassUID")
    if sop != str(request.AffectedSOPInstanceUID):
        raise InstanceRejected("SOPInstanceUID differs from the C-STORE request's Affected SOP Instance UID",
                               status=UID_MISMATCH)
    if sop_class != str(request.AffectedSOPClassUID):
        raise InstanceRejected("SOPClassUID differs from the C-STORE request's Affected SOP Class UID",
                               status=DATASET_DOES_NOT_MATCH_SOP_CLASS)
    return study, series, sop


def _check_pixel_data(ds, syntax: UID) -> None:
    if "Rows" not in ds or "Columns" not in ds:
        return  # not an image object (SR, presentation state...): nothing to check
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InstanceRejected("PixelData missing from an image object", status=INCOMPLETE_PIXEL_DATA)
    if "PixelData" in ds and not UID(syntax).is_compressed:
        bits = int(ds.get("BitsAllocated", 16))
        values = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("NumberOfFrames", 1) or 1)
        expected = (values * bits + 7) // 8
        if len(ds.PixelData) < expected:
            raise InstanceRejected(f"PixelData holds {len(ds.PixelData)} bytes, Rows x Columns x frames needs {expected}",
                                   status=INCOMPLETE_PIXEL_DATA)


def _safe(uid) -> str:
    try:
        return validate_uid(uid, "AffectedSOPInstanceUID")
    except NodeError:
        return ""


def _called_ae(event) -> str:
    """The AE title the peer addressed (from its A-ASSOCIATE-RQ), not ours."""
    primitive = event.assoc.requestor.primitive
    return str(getattr(primitive, "called_ae_title", "") or "").strip()


def handle_accepted(event, record: Recorder, metrics: NodeMetrics) -> None:
    metrics.association("accepted")
    record("dicom.association.accepted", actor=event.assoc.requestor.ae_title, peer=event.assoc.requestor.address,
           called_ae=_called_ae(event))


def handle_rejected(event, record: Recorder, metrics: NodeMetrics, settings) -> None:
    """Why, as the ACSE decided it (pynetdicom checks the calling AE, then the called AE; a refusal
    with both right is the association limit)."""
    metrics.association("rejected")
    requestor = event.assoc.requestor
    called = _called_ae(event)
    if settings.allowed_calling_aets and requestor.ae_title not in settings.allowed_calling_aets:
        reason = "calling AE title not allowed"
    elif settings.require_called_aet and called != settings.ae_title:
        reason = f"called AE title {called!r} is not this node's ({settings.ae_title!r})"
    else:
        reason = "maximum associations reached"
    record("dicom.association.rejected", outcome="failure", actor=requestor.ae_title, peer=requestor.address,
           reason=reason, called_ae=called)


def handle_ended(event, tally: AssociationTally, record: Recorder, assembly: SeriesSink, hold_aborted: bool) -> None:
    """EVT_RELEASED / EVT_ABORTED (pynetdicom fires the latter for an A-ABORT either way and for a
    transport closed without release: a sender killed mid-series)."""
    aborted = event.event.name == "EVT_ABORTED"
    for study, series in tally.flush(event.assoc, record, "aborted" if aborted else "released"):
        assembly.association_ended(study, series, aborted=aborted and hold_aborted)
