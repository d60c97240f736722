"""Find DICOM instances under a folder and group them by series.

Tolerant-but-checked reading: any file name, any nesting,
non-DICOM files mixed in. Only headers are read here (``stop_before_pixels``);
pixel data is decoded later for the one selected series.

What is accepted when UIDs are blank or missing (real-world exports do this):

* ``SOPClassUID`` blank/missing: taken from the file meta
  (MediaStorageSOPClassUID); if that is missing too, an instance with
  ``Modality`` CT and image pixel attributes is treated as CT Image Storage.
  The SEG must reference each source instance by class and instance UID, so a
  class is required; it is never guessed for other modalities.
* ``SOPInstanceUID`` blank/missing: taken from MediaStorageSOPInstanceUID;
  with neither, the file is skipped (it could not be referenced by a SEG) and
  reported.
* ``StudyInstanceUID`` / ``SeriesInstanceUID`` blank/missing: the file is
  skipped and reported; we never invent the study a SEG belongs to.
* The same SOPInstanceUID twice (a copied file): the first copy is kept.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, CTImageStorage

from medseg.core.exceptions import NoImageSeriesError

#: Unregistered (private) SOP classes count as images when they carry a pixel matrix.
IMAGE_ATTRIBUTES = ("Rows", "Columns")


@dataclass
class Series:
    """One series found in the input: headers in discovery order."""

    series_uid: str
    study_uid: str
    headers: list[Dataset] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    @property
    def first(self) -> Dataset:
        return self.headers[0]

    @property
    def modality(self) -> str:
        return str(getattr(self.first, "Modality", "") or "")

    @property
    def series_number(self) -> int | None:
        value = getattr(self.first, "SeriesNumber", None)
        return int(value) if value not in (None, "") else None

    @property
    def is_image(self) -> bool:
        """An image storage SOP class (by its registered name), else: has a pixel matrix."""
        name = UID(str(self.first.SOPClassUID)).name
        if name != str(self.first.SOPClassUID):  # a registered SOP class: trust its name
            return "Image Storage" in name
        return all(getattr(self.first, a, None) not in (None, "") for a in IMAGE_ATTRIBUTES)

    @property
    def is_multiframe(self) -> bool:
        return int(getattr(self.first, "NumberOfFrames", 1) or 1) > 1

    @property
    def is_original_primary(self) -> bool:
        image_type = [str(v).upper() for v in (getattr(self.first, "ImageType", None) or [])]
        return image_type[:2] == ["ORIGINAL", "PRIMARY"]

    @property
    def orientation(self) -> str:
        return orientation_label(getattr(self.first, "ImageOrientationPatient", None))


@dataclass
class ScanResult:
    series: list[Series]
    files_seen: int
    non_dicom: int
    skipped: Counter  # reason -> count

    def summary(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "non_dicom_files": self.non_dicom,
            "skipped_instances": dict(self.skipped),
            "series_found": len(self.series),
        }


def orientation_label(iop, tolerance_deg: float = 30.0) -> str:
    """AXIAL / CORONAL / SAGITTAL by the slice normal's dominant patient axis."""
    try:
        row, col = np.asarray(iop[:3], float), np.asarray(iop[3:6], float)
    except (TypeError, ValueError, IndexError):
        return "UNKNOWN"
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    if len(iop) != 6 or norm < 1e-6:
        return "UNKNOWN"
    normal = np.abs(normal / norm)
    axis = int(np.argmax(normal))
    if normal[axis] < np.cos(np.radians(tolerance_deg)):
        return "OBLIQUE"
    return ("SAGITTAL", "CORONAL", "AXIAL")[axis]


def scan_folder(root: Path, *, workers: int | None = None) -> ScanResult:
    """Read the header of every DICOM file under ``root`` and group by series."""
    root = Path(root)
    if root.is_file():
        paths = [root]
    elif root.is_dir():
        paths = sorted(p for p in root.rglob("*") if p.is_file())
    else:
        raise NoImageSeriesError(f"input does not exist: {root.name}", code="input.not_found")
    if not paths:
        raise NoImageSeriesError("input folder is empty", code="input.empty")

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        headers = list(pool.map(_read_header, paths))

    skipped: Counter = Counter()
    non_dicom = 0
    by_series: dict[str, Series] = {}
    seen_instances: set[str] = set()
    for path, (ds, reason) in zip(paths, headers):
        if ds is None:
            if reason == "not DICOM":
                non_dicom += 1
            else:
                skipped[reason] += 1
            continue
        reason = _normalize_uids(ds)
        if reason:
            skipped[reason] += 1
            continue
        if ds.SOPInstanceUID in seen_instances:
            skipped["duplicate SOPInstanceUID (copy of a file already read)"] += 1
            continue
        seen_instances.add(ds.SOPInstanceUID)
        series = by_series.setdefault(ds.SeriesInstanceUID, Series(ds.SeriesInstanceUID, ds.StudyInstanceUID))
        series.headers.append(ds)
        series.paths.append(path)

    if not by_series:
        if non_dicom and not skipped:
            raise NoImageSeriesError(f"no DICOM files among the {len(paths)} files in the input", code="input.no_dicom")
        detail = "; ".join(f"{n} {r}" for r, n in skipped.items()) or "nothing readable"
        raise NoImageSeriesError(f"no usable DICOM instances in the input ({detail})")
    return ScanResult(list(by_series.values()), len(paths), non_dicom, skipped)


def _read_header(path: Path) -> tuple[Dataset | None, str]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None, "not DICOM"
    except Exception:  # noqa: BLE001 - any parser failure means "unreadable header"
        return None, "unreadable or truncated DICOM header"
    if "DirectoryRecordSequence" in ds:  # DICOMDIR
        return None, "not DICOM"
    return ds, ""


def _normalize_uids(ds: Dataset) -> str:
    """Fill blank UIDs from the file meta where the standard allows; else a skip reason."""
    meta = getattr(ds, "file_meta", Dataset())
    if not str(getattr(ds, "SOPInstanceUID", "") or "").strip():
        fallback = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "").strip()
        if not fallback:
            return "SOPInstanceUID missing (instance cannot be referenced)"
        ds.SOPInstanceUID = fallback
    if not str(getattr(ds, "SOPClassUID", "") or "").strip():
        fallback = str(getattr(meta, "MediaStorageSOPClassUID", "") or "").strip()
        if fallback:
            ds.SOPClassUID = fallback
        elif str(getattr(ds, "Modality", "")).upper() == "CT" and "Rows" in ds:
            ds.SOPClassUID = CTImageStorage
        else:
            return "SOPClassUID missing and not inferable"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not str(getattr(ds, keyword, "") or "").strip():
            return f"{keyword} missing"
    return ""
