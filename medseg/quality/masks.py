"""The masks a review compares: our SEG, the radiologist's corrected SEG or NIfTI, on the source
series' grid read back from the spool; and the segments of any SEG (``seg_segments``), which an
acceptance run (``medseg.quality.acceptance``) reads too. Imported only when a mask is scored
(pydicom, highdicom, nibabel), never by the doors that store one.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from medseg.core.exceptions import MedsegError, ReviewError
from medseg.core.io.geometry import sort_and_check
from medseg.core.io.scan import scan_folder
from medseg.core.volume import Volume, on_grid
from medseg.jobs.orm import Job


def source_series(spool_root: Path, job: Job) -> tuple[list, np.ndarray]:
    """The headers (slice order) and affine of the series ``job`` segmented, from the spool."""
    folder = Path(spool_root) / job.study_uid / job.series_uid
    scan = scan_folder(folder) if folder.is_dir() else None
    series = next((x for x in scan.series if x.series_uid == job.series_uid), None) if scan else None
    if series is None:
        raise ReviewError("the source images of this result are no longer in the spool", code="review.no_source")
    order, affine = sort_and_check(series.headers)
    return [series.headers[i] for i in order], affine


def read_our_seg(job: Job, uids: list[str]) -> np.ndarray:
    from medseg.core.seg import read_seg_mask

    if not job.seg_path or not Path(job.seg_path).is_file():
        raise ReviewError("the SEG this review refers to is no longer in the results folder", code="review.no_result")
    return read_seg_mask(Path(job.seg_path), uids) > 0


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG: its number, label and coded property type."""

    number: int
    label: str
    type_code: tuple[str, str]  # (CodeValue, CodingSchemeDesignator) of SegmentedPropertyTypeCodeSequence


def seg_segments(data: bytes, series_uid: str, uids: list[str], shape) -> tuple[np.ndarray, list[Segment]]:
    """Every segment of a SEG on the source instances ``uids`` (slice order): (k, r, c, segments) bool, and
    the segments in that order. A SEG of other images, or of other frames, is refused: never resampled."""
    import highdicom as hd

    try:
        seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(data)), copy=False)
    except Exception as exc:  # noqa: BLE001 - any damage: the user gets one line
        raise ReviewError(f"the mask is not a readable DICOM SEG ({type(exc).__name__})",
                          code="review.unreadable") from None
    series = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    referenced = {str(item.ReferencedSOPInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])
                  for item in item.get("ReferencedInstanceSequence", [])}
    if series_uid not in series or not referenced <= set(uids):
        raise ReviewError("the SEG references other images than the series it is compared on "
                          "(a different series or slices); it cannot be compared without resampling",
                          code="review.geometry")
    if (int(seg.Rows), int(seg.Columns)) != tuple(shape[1:]):
        raise ReviewError(f"the SEG has {seg.Rows}x{seg.Columns} frames, the source {shape[1]}x{shape[2]}",
                          code="review.geometry")
    segments = [Segment(int(item.SegmentNumber), str(item.get("SegmentLabel", "")), _type_code(item))
                for item in sorted(seg.SegmentSequence, key=lambda item: int(item.SegmentNumber))]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=False,
                                               segment_numbers=[s.number for s in segments],
                                               assert_missing_frames_are_empty=True)
    threshold = 0.5 if str(seg.SegmentationType) == "FRACTIONAL" else 0
    return np.asarray(pixels) > threshold, segments


def _type_code(item) -> tuple[str, str]:
    codes = item.get("SegmentedPropertyTypeCodeSequence", [])
    return (str(codes[0].CodeValue), str(codes[0].CodingSchemeDesignator)) if codes else ("", "")


def seg_mask(data: bytes, series_uid: str, uids: list[str], shape) -> np.ndarray:
    """Foreground of every segment of a corrected SEG, on the source instances ``uids`` (slice order)."""
    return seg_segments(data, series_uid, uids, shape)[0].any(axis=-1)


def nifti_mask(data: bytes, target: Volume) -> np.ndarray:
    """A NIfTI mask on the target's voxel grid, exactly (axes permuted/flipped, never resampled)."""
    from medseg.core.io.nifti import read_nifti

    suffix = ".nii.gz" if data[:2] == b"\x1f\x8b" else ".nii"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"mask{suffix}"
        path.write_bytes(data)
        try:
            volume = read_nifti(path)
        except MedsegError as exc:
            raise ReviewError(f"the corrected mask is not a usable NIfTI: {exc.message}", code="review.unreadable") from None
    array = on_grid(volume, target)
    if array is None:
        raise ReviewError(f"the NIfTI mask is not on the source grid (shape {volume.shape} vs {target.shape}, or "
                          "different spacing/origin/orientation); export it on the original series",
                          code="review.geometry")
    return array > 0
