"""Review intake: a radiologist's corrected mask (or "accepted as is") becomes a scored review.

Three doors, one path: the DICOM node (a corrected SEG sent back by C-STORE,
:meth:`ReviewIntake.receive_segs`), ``medseg review submit`` and ``POST /reviews``
(:meth:`ReviewIntake.submit`).

**Reviews never block** (issue 18: a review through the CLI took 7-10 s, 18-36 s when it
triggered a fallback, because scoring, the SLOs, the rollback and the gate ran inside it). A door
only finds the job the review is of, keeps the mask (``reviews_dir``) and stores the review as
``received`` (audited ``review.received``), then answers. Scoring, SLO evaluation and any fallback
run afterwards in :meth:`ReviewIntake.score_pending`: ``medseg serve``'s scoring loop
(:class:`ScoringLoop`, woken at once by each door), or ``medseg review score``. A review is claimed
by one scorer (``received -> scoring``, an atomic update), so the service and a CLI scorer never
score it twice; one left ``scoring`` by a dead process is received again at start. A review that
cannot be scored (off-grid, unreadable, source images gone) ends ``rejected`` with the reason and
a ``review.rejected`` event; its mask is kept.

* The review is of one job's SEG: the latest job of the study (and series) that produced one.
* The corrected mask must lie on the source series' grid. A SEG must reference that series and only
  its instances; a NIfTI must have the same voxel grid (axis order and direction may differ: they
  are permuted and flipped exactly, never resampled). Anything else is a ``review.geometry`` error.
* "Accepted as is" scores the SEG against itself: perfect agreement, a real data point.
* A corrected SEG that matches none of our results is kept (the spool), recorded as an
  ``unmatched`` review, audited and reported; never dropped.

Matching a SEG from the network, in order: its SeriesInstanceUID or a referenced series is one of
our SEG series (the viewer edited our object) -> that job; a referenced series is a source series
we segmented -> its latest job with a SEG. Our own SEG coming back unchanged (same SOP Instance
UID) is not a review and is refused as such.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from audit.recorder import Recorder
from medseg.core.exceptions import ReviewError
from medseg.core.loops import Ticker
from medseg.db import session
from medseg.jobs.orm import Job
from medseg.jobs.store import JobStore
from medseg.quality.orm import Review
from medseg.quality.states import ReviewStatus
from medseg.quality.worklist import Worklist

if TYPE_CHECKING:  # the monitor (SLOs, alerts, webhooks) is only used when a review is scored
    from medseg.quality.monitor import QualityMonitor

log = logging.getLogger(__name__)


@dataclass
class ReviewOutcome:
    review: Review
    slos: list = field(default_factory=list)


class ReviewIntake:
    def __init__(self, jobs: JobStore, spool_root: Path, reviews_dir: Path, audit: Recorder,
                 monitor: Callable[[], QualityMonitor], notify: Callable[[], None] | None = None) -> None:
        """``monitor`` gives the quality monitor when a review is scored: a door that only stores
        reviews (``medseg review submit``) never builds it (SLOs, alerts, the fallback policy)."""
        self.jobs, self.engine, self.audit, self._monitor = jobs, jobs.engine, audit, monitor
        self.spool_root, self.reviews_dir = Path(spool_root), Path(reviews_dir)
        self.notify = notify or (lambda: None)  # the service wakes its scoring loop

    # -- doors ---------------------------------------------------------------------------------
    def submit(self, study_uid: str, *, mask: bytes | None, accepted: bool, door: str, submitted_by: str,
               reviewer: str = "", series_uid: str | None = None) -> ReviewOutcome:
        """CLI and API: ``mask`` is a DICOM SEG or a NIfTI (bytes); None with ``accepted``."""
        if accepted == (mask is not None):
            raise ReviewError("give either a corrected mask or 'accepted as is', not both or neither",
                              code="review.invalid")
        job = self._job_for_study(study_uid, series_uid)
        return self._receive(job, mask, accepted=accepted, door=door, submitted_by=submitted_by, reviewer=reviewer)

    def receive_segs(self, files: list[Path], calling_ae: str) -> list[ReviewOutcome | None]:
        """DICOM door: SEG instances a peer sent us. Never raises: a failure is audited and kept."""
        import pydicom

        out = []
        for path in files:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                known = self._known(str(ds.get("SOPInstanceUID", "")))
                if known is not None:  # delivered again, or intake repeated after a restart
                    out.append(ReviewOutcome(known))
                    continue
                job = self._job_for_seg(ds, calling_ae)
                if job is None:
                    out.append(self._unmatched(ds, path, calling_ae))
                    continue
                out.append(self._receive(job, None, accepted=False, door="dicom", submitted_by=calling_ae,
                                         reviewer=str(getattr(ds, "ContentCreatorName", ""))[:64], stored=Path(path),
                                         correction_uid=str(ds.SOPInstanceUID)))
            except ReviewError:
                out.append(None)  # audited as review.rejected by _score
            except Exception as exc:  # noqa: BLE001 - the SEG stays in the spool; record why it was not scored
                self.audit("review.rejected", outcome="failure", actor=calling_ae, path=Path(path).name,
                           reason=f"the SEG could not be processed ({type(exc).__name__})", door="dicom")
                out.append(None)
        return out

    # -- matching ------------------------------------------------------------------------------
    def _known(self, sop_uid: str) -> Review | None:
        if not sop_uid:
            return None
        with session(self.engine) as s:
            return s.scalar(select(Review).where(Review.correction_sop_uid == sop_uid))

    def _job_for_study(self, study_uid: str, series_uid: str | None) -> Job:
        jobs = self.jobs.with_seg(study_uid, series_uid)
        if not jobs:
            raise ReviewError("no SEG of ours exists for this study (and series); nothing to review",
                              code="review.no_result")
        if len({j.series_uid for j in jobs}) > 1:
            raise ReviewError("several series of this study have SEGs; name the series (--series / series_uid)",
                              code="review.ambiguous")
        return jobs[0]

    def _job_for_seg(self, ds, calling_ae: str) -> Job | None:
        if ds.get("Modality") != "SEG":
            raise ReviewError("not a Segmentation object (Modality is not SEG)", code="review.unreadable")
        refs = {str(ds.get("SeriesInstanceUID", ""))} | {
            str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", [])}
        refs.discard("")
        own = self.jobs.by_seg_sop(str(ds.SOPInstanceUID))
        if own is not None:
            self.audit("review.rejected", outcome="failure", actor=calling_ae, sop_uid=own.seg_sop_uid, job_id=own.id,
                       study_uid=own.study_uid, reason="our own SEG came back unchanged: not a review", door="dicom")
            raise ReviewError("our own SEG came back unchanged", code="review.own_seg")
        return self.jobs.latest_for_series(refs)

    def _unmatched(self, ds, path: Path, calling_ae: str) -> ReviewOutcome:
        with session(self.engine) as s, s.begin():
            row = Review(status=ReviewStatus.UNMATCHED, study_uid=str(ds.get("StudyInstanceUID", "")), door="dicom",
                         submitted_by=calling_ae, correction_sop_uid=str(ds.SOPInstanceUID), stored_path=str(path),
                         note="references no series or SEG of ours; kept in the spool")
            s.add(row)
            s.flush()
            self.audit("review.unmatched", connection=s.connection(), outcome="failure", actor=calling_ae,
                       review_id=row.id, study_uid=row.study_uid or None, sop_uid=row.correction_sop_uid,
                       reason=row.note)
        log.warning("a corrected SEG from %s matched none of our results (review %d, kept)", calling_ae, row.id)
        return ReviewOutcome(row)

    # -- storing -------------------------------------------------------------------------------
    def _receive(self, job: Job, mask: bytes | None, *, accepted: bool, door: str, submitted_by: str,
                 reviewer: str, stored: Path | None = None, correction_uid: str = "") -> ReviewOutcome:
        """Keep the mask and store the review as ``received``; the scoring loop does the rest."""
        if mask is not None and is_dicom(mask) and not correction_uid:
            import pydicom

            try:
                correction_uid = str(pydicom.dcmread(io.BytesIO(mask), stop_before_pixels=True).get("SOPInstanceUID", ""))
            except Exception:  # noqa: BLE001 - damaged: scoring rejects it with the reason
                correction_uid = ""
        with session(self.engine) as s, s.begin():
            row = Review(status=ReviewStatus.RECEIVED, job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid,
                         model=job.model_used, door=door, submitted_by=submitted_by, reviewer=reviewer,
                         accepted=accepted, correction_sop_uid=correction_uid, site=job.calling_ae)
            s.add(row)
            s.flush()
            row.stored_path = str(stored) if stored else self._keep(row.id, mask)
            self.audit("review.received", connection=s.connection(), actor=submitted_by, door=door,
                       reviewer=reviewer or None, accepted=accepted, review_id=row.id, **_ids(job))
        self.notify()
        return ReviewOutcome(row)

    # -- scoring -------------------------------------------------------------------------------
    def recover(self) -> int:
        """At start: reviews a dead scorer had claimed are received again (scored from the start)."""
        with session(self.engine) as s, s.begin():
            return s.execute(update(Review).where(Review.status == ReviewStatus.SCORING)
                             .values(status=ReviewStatus.RECEIVED)).rowcount

    def score_pending(self, ids: list[int] | None = None) -> list[ReviewOutcome]:
        """Score every received review (or those of ``ids``), oldest first, then evaluate the SLOs
        of each model they scored (the fallback policy included)."""
        outcomes = []
        while (row := self._claim(ids)) is not None:
            outcomes.append(self._score(row))
        for model in dict.fromkeys(o.review.model for o in outcomes if o.review.status == ReviewStatus.SCORED):
            slos = self._monitor().check_slos(model)
            for o in outcomes:
                if o.review.model == model and o.review.status == ReviewStatus.SCORED:
                    o.slos = slos
        return outcomes

    def _claim(self, ids: list[int] | None) -> Review | None:
        with session(self.engine) as s, s.begin():
            q = select(Review.id).where(Review.status == ReviewStatus.RECEIVED).order_by(Review.id)
            for review_id in s.scalars(q.where(Review.id.in_(ids)) if ids is not None else q):
                claimed = s.execute(update(Review).where(Review.id == review_id, Review.status == ReviewStatus.RECEIVED)
                                    .values(status=ReviewStatus.SCORING)).rowcount
                if claimed:
                    return s.get(Review, review_id)
        return None

    def _score(self, row: Review) -> ReviewOutcome:
        # masks and scores import pydicom, highdicom and scipy: here, so that storing a review stays fast
        from medseg.core.volume import Volume
        from medseg.quality.masks import nifti_mask, read_our_seg, seg_mask, source_series
        from medseg.quality.scores import score_review

        job = self.jobs.by_id(row.job_id) if row.job_id is not None else None
        ids = _ids(job) if job is not None else dict(study_uid=row.study_uid)
        try:
            if job is None:
                raise ReviewError("the job this review refers to no longer exists", code="review.no_result")
            mask = Path(row.stored_path).read_bytes() if row.stored_path else None
            headers, affine = source_series(self.spool_root, job)
            uids = [str(h.SOPInstanceUID) for h in headers]
            predicted = Volume(read_our_seg(job, uids), affine)
            if row.accepted:
                reference = predicted
            elif mask is not None and is_dicom(mask):
                reference = Volume(seg_mask(mask, job.series_uid, uids, predicted.shape), affine)
            elif mask is not None:
                reference = Volume(nifti_mask(mask, predicted), affine)
            else:
                raise ReviewError("the kept mask of this review is missing", code="review.unreadable")
            scores = score_review(predicted, reference)
        except Exception as exc:  # noqa: BLE001 - every review ends visibly: scored or rejected with the reason
            code, message = ((exc.code, exc.message) if isinstance(exc, ReviewError)
                             else ("review.unscorable", f"the review could not be scored ({type(exc).__name__})"))
            return ReviewOutcome(self._reject(row, code, message, ids))
        header = headers[0]
        scanner = " / ".join(str(header.get(k, "") or "?") for k in ("Manufacturer", "ManufacturerModelName"))
        with session(self.engine) as s, s.begin():
            row = s.get(Review, row.id)
            for name, value in dict(status=ReviewStatus.SCORED, scanner=scanner, dice=scores.dice,
                                    fn_rate=scores.fn_rate, reference_lesions=scores.reference_lesions,
                                    detected_lesions=scores.detected_lesions,
                                    reference_lesions_ge10=scores.reference_lesions_ge10,
                                    detected_lesions_ge10=scores.detected_lesions_ge10,
                                    false_positive_lesions=scores.false_positive_lesions, hd95_mm=scores.hd95_mm,
                                    msd_mm=scores.msd_mm, fp_volume_ml=scores.fp_volume_ml,
                                    volume_diff_ml=scores.volume_diff_ml, scores=scores.as_dict()).items():
                setattr(row, name, value)
            self.audit("review.scored", connection=s.connection(), actor=row.submitted_by, review_id=row.id,
                       accepted=row.accepted, dice=round(scores.dice, 4),
                       fn_rate=None if scores.fn_rate is None else round(scores.fn_rate, 4),
                       lesions=scores.reference_lesions, detected=scores.detected_lesions,
                       missed=len(scores.missed), hd95_mm=scores.hd95_mm, **ids)
            Worklist(self.engine, self.audit).close_for_series(s, job.study_uid, job.series_uid, row.id, row.submitted_by)
        return ReviewOutcome(row)

    def _reject(self, row: Review, code: str, message: str, ids: dict) -> Review:
        with session(self.engine) as s, s.begin():
            row = s.get(Review, row.id)
            row.status, row.note = ReviewStatus.REJECTED, f"{message} [{code}]"
            self.audit("review.rejected", connection=s.connection(), outcome="failure", actor=row.submitted_by,
                       review_id=row.id, code=code, reason=message, door=row.door, **ids)
        return row

    def _keep(self, review_id: int, mask: bytes | None) -> str:
        if mask is None:
            return ""
        self.reviews_dir.mkdir(parents=True, exist_ok=True)
        suffix = ".dcm" if is_dicom(mask) else ".nii.gz" if mask[:2] == b"\x1f\x8b" else ".nii"
        path = self.reviews_dir / f"review-{review_id}{suffix}"
        path.write_bytes(mask)
        return str(path)


def is_dicom(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def _ids(job: Job) -> dict:
    return dict(job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid, model=job.model_used,
                patient=job.patient)


class ScoringLoop(Ticker):
    """``medseg serve``'s thread that scores received reviews (woken by each door; every few
    seconds it also picks up reviews another process stored, e.g. ``medseg review submit``)."""

    thread_name, interval_s = "medseg-reviews", 2.0

    def __init__(self, intake: ReviewIntake) -> None:
        self.intake = intake
        super().__init__()

    def tick(self) -> list[ReviewOutcome]:
        return self.intake.score_pending()


__all__ = ["ReviewError", "ReviewIntake", "ReviewOutcome", "ScoringLoop"]
