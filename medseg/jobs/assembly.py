"""Study assembly: a series is complete once no instance arrived for the quiet period.

Arrivals are tracked in memory (one timestamp per series: no database write per
instance); the series row is written once per revision (first new instance), so a
restart finds every series that was still receiving and restarts its quiet period.

When the quiet period passes the series is checked from its headers alone, with the
same rules the segmentation core applies (``medseg.core.io``: selection, then geometry):

* not a series we segment (a SEG coming back, a localizer, MR...) -> ``ignored`` with the reason;
* a geometry problem (a gap in the slices, duplicates...) -> wait ``continuity_grace_s`` more
  for late slices, then queue the job as ``failed`` with the rule that broke: visible, not lost;
* instances of it refused for lack of resources (0xA700: disk floor, full disk) and not yet
  received since, or the association delivering it **aborted** (the sender crashed, the link
  dropped: nothing was refused, but nothing says the series was finished) and no association
  delivering it released normally since (after a crash of the node: more instances on disk than
  released associations delivered) -> held, not segmented: a partial series must never come
  back as a normal SEG. ``study.series_incomplete`` says so once; the sender's retry completes it
  (the quiet period runs again); after ``incomplete_hold_s`` without it the job is created
  ``failed`` (``study.incomplete``), visible, with no SEG (``[node] hold_aborted = false`` for
  senders that end every association with an abort);
* otherwise -> a queued job (superseding earlier jobs of the same series).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

from audit.recorder import Recorder
from medseg.config import Settings
from medseg.core.exceptions import GeometryError, InputError
from medseg.core.io.geometry import sort_and_check
from medseg.core.io.scan import scan_folder
from medseg.core.io.selection import ineligible_reason
from medseg.core.loops import Ticker
from medseg.jobs.store import JobStore


class SpoolView(Protocol):
    """What assembly reads of the node's spool (``dicom_node.spool.Spool``)."""

    def path_for(self, study_uid: str, series_uid: str) -> Path: ...

    def instances(self, study_uid: str, series_uid: str) -> list[Path]: ...

    def series_dirs(self) -> Iterator[tuple[str, str, Path]]: ...

    def remove_partials(self) -> int: ...


@dataclass
class _Pending:
    calling_ae: str
    last_arrival: float
    received: int = 0
    grace_until: float | None = None  # set when a geometry check failed once
    #: SOP instance UIDs refused (0xA700) and not received since; held_since: when the hold began
    refused: set = field(default_factory=set)
    held_since: float | None = None
    #: the last association that delivered instances of it aborted
    interrupted: bool = False


class Assembly(Ticker):
    thread_name, interval_s = "medseg-assembly", 0.2

    def __init__(self, spool: SpoolView, jobs: JobStore, settings: Settings, model_ref: Callable[[], str],
                 record: Recorder, clock: Callable[[], float] = time.monotonic,
                 on_segmentations: Callable[[list, str], object] | None = None,
                 released_instances: Callable[[str, str], int] | None = None) -> None:
        self.spool, self.jobs, self.settings, self.model_ref, self.record = spool, jobs, settings, model_ref, record
        #: instances of a series that associations ended by a normal release delivered (the audit
        #: trail's dicom.instances.received events): what :meth:`recover` checks the spool against
        self.released_instances = released_instances
        #: a complete SEG series (e.g. a radiologist's correction): (files, calling AE) -> review intake
        self.on_segmentations = on_segmentations
        self.clock = clock
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()
        super().__init__()

    # -- called from SCP threads ------------------------------------------------------------
    def arrived(self, study_uid: str, series_uid: str, calling_ae: str, patient: str = "", accession: str = "") -> None:
        """A new instance of this series is on disk (``patient``: keyed hash of its patient ID)."""
        key = (study_uid, series_uid)
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                self.jobs.series_seen(study_uid, series_uid, calling_ae, patient, accession)
                entry = self._pending[key] = _Pending(calling_ae, self.clock())
            entry.last_arrival = self.clock()
            entry.received += 1
            entry.grace_until = None

    def refused(self, study_uid: str, series_uid: str, sop_uid: str) -> None:
        """The node refused this instance for lack of resources: hold the series until it arrives."""
        with self._lock:
            entry = self._pending.get((study_uid, series_uid))
            if entry is None:  # nothing of the series stored yet: nothing that could be segmented
                return
            entry.refused.add(sop_uid)
            entry.last_arrival = self.clock()

    def association_ended(self, study_uid: str, series_uid: str, aborted: bool) -> None:
        """An association that delivered this series ended: an abort holds it, a release lifts that."""
        with self._lock:
            entry = self._pending.get((study_uid, series_uid))
            if entry is not None:
                entry.interrupted = aborted
                if not aborted and not entry.refused:
                    entry.held_since = None

    def _still_missing(self, key: tuple[str, str], entry: _Pending, files: list) -> bool:
        """True while refused instances have not arrived since, or while the last association that
        delivered the series was aborted (the series is held)."""
        with self._lock:
            entry.refused -= {Path(f).stem for f in files}
            missing, interrupted = len(entry.refused), entry.interrupted
            held = bool(missing) or interrupted
            first_hold = held and entry.held_since is None
            if first_hold:
                entry.held_since = self.clock()
            expired = held and self.clock() - entry.held_since >= self.settings.node.incomplete_hold_s
        why = (f"{missing} instance(s) refused for lack of resources never arrived" if missing else
               "the association delivering it was aborted and no complete resend arrived")
        if first_hold:
            self.record("study.series_incomplete", outcome="failure", study_uid=key[0], series_uid=key[1],
                        refused=missing, aborted=interrupted, received=len(files),
                        hold_s=self.settings.node.incomplete_hold_s, reason=why)
        if expired:
            with self._lock:
                if self._pending.get(key) is not entry:
                    return True
                del self._pending[key]
                self.jobs.complete_series(*key, self.model_ref(), len(files), failed=(
                    "study.incomplete", f"{why} ({len(files)} received): a partial series is not segmented"),
                    quiet_period_s=self.settings.node.quiet_period_s)
            return True
        return held

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- lifecycle ---------------------------------------------------------------------------
    def recover(self) -> int:
        """Restart the quiet period of every series that was receiving, including ones on disk
        whose first instance was stored just before a crash (before its row was written)."""
        self.spool.remove_partials()
        known = self.jobs.known_series()
        for study_uid, series_uid, _ in self.spool.series_dirs():
            if (study_uid, series_uid) not in known:
                self.jobs.series_seen(study_uid, series_uid, "")
        now = self.clock()
        with self._lock:
            for row in self.jobs.receiving_series():
                entry = self._pending.setdefault((row.study_uid, row.series_uid), _Pending(row.calling_ae, now))
                entry.interrupted = self._cut_off(row.study_uid, row.series_uid)
            return len(self._pending)

    def _cut_off(self, study_uid: str, series_uid: str) -> bool:
        """After a crash: more instances on disk than released associations delivered means an
        association was still delivering when the node died; the series waits for a resend, as
        after an abort (a crash just after a release leaves nothing to wait for)."""
        if self.released_instances is None or not self.settings.node.hold_aborted:
            return False
        return self.released_instances(study_uid, series_uid) < len(self.spool.instances(study_uid, series_uid))

    def start(self) -> None:
        """Start the loop. The quiet period of every series recovered after a restart runs from now,
        not from the recovery: a sender can only resume once the node listens, and loading the model
        in between must not complete a series that was cut off mid-transfer."""
        now = self.clock()
        with self._lock:
            for entry in self._pending.values():
                entry.last_arrival = max(entry.last_arrival, now)
        super().start()

    def tick(self) -> None:
        """Complete every series whose quiet period (and grace, if any) has passed."""
        now = self.clock()
        quiet = self.settings.node.quiet_period_s
        with self._lock:
            due = [(k, e) for k, e in self._pending.items()
                   if now - e.last_arrival >= quiet and (e.grace_until is None or now >= e.grace_until)]
        for key, entry in due:
            self._complete(key, entry)

    def _segmentations(self, key: tuple[str, str], entry: _Pending, files: list) -> None:
        """A SEG series came in (a corrected result): hand it to review intake; it is not segmented.
        Intake runs before the series row is closed, so a crash in between repeats the intake after
        the restart (the intake skips SEGs it already has: at least once, and idempotent)."""
        with self._lock:
            if self._pending.get(key) is not entry:
                return
            del self._pending[key]
        self.on_segmentations(files, entry.calling_ae)
        self.jobs.complete_series(*key, self.model_ref(), len(files), quiet_period_s=self.settings.node.quiet_period_s,
                                  ignored_reason="a segmentation (SEG): handed to review intake, not segmented")

    def _complete(self, key: tuple[str, str], entry: _Pending) -> None:
        study_uid, series_uid = key
        files = self.spool.instances(study_uid, series_uid)
        if (entry.refused or entry.interrupted) and self._still_missing(key, entry, files):
            return
        ignored, failed = "", None
        try:
            scan = scan_folder(self.spool.path_for(study_uid, series_uid))
            series = next(s for s in scan.series if s.series_uid == series_uid)
            if series.modality == "SEG" and self.on_segmentations is not None:
                self._segmentations(key, entry, files)
                return
            ignored = ineligible_reason(series, self.settings.selection)
            if not ignored:
                sort_and_check(series.headers, self.settings.geometry)
        except StopIteration:
            ignored = "no readable instance of this series in the spool"
        except GeometryError as exc:
            if entry.grace_until is None and self.settings.node.continuity_grace_s > 0:
                with self._lock:
                    if self._pending.get(key) is entry and entry.grace_until is None:
                        entry.grace_until = self.clock() + self.settings.node.continuity_grace_s
                self.record("study.continuity_wait", study_uid=study_uid, series_uid=series_uid,
                            rule=exc.message, wait_s=self.settings.node.continuity_grace_s)
                return
            failed = (exc.code, exc.message)
        except InputError as exc:
            ignored = exc.message
        with self._lock:  # held across the write: an arrival now must reopen the series afterwards
            if self._pending.get(key) is not entry or self.clock() - entry.last_arrival < self.settings.node.quiet_period_s:
                return  # an instance arrived while we were checking: wait for quiet again
            del self._pending[key]
            self.jobs.complete_series(study_uid, series_uid, self.model_ref(), len(files), ignored_reason=ignored,
                                      failed=failed, quiet_period_s=self.settings.node.quiet_period_s)
