"""The durable spool: spool/<study>/<series>/<sop>.dcm, written and fsynced before success.

Paths are built from validated UIDs only, in one function (:meth:`Spool.path_for`): a UID
is 1-64 characters of digits and dots with no empty component, and the resolved
path must stay inside the spool root. Files are written to a temporary name,
fsynced, renamed into place and the directory fsynced, so a crash leaves either
no file or the whole file, never a torn one under the final name.

A second copy of an instance already on disk is accepted and not written again
(idempotent, as Orthanc does by default): the first copy is what was acknowledged.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dicom_node.exceptions import CANNOT_WRITE, InvalidIdentifierError, NodeError, OutOfResources
from dicom_node.uids import is_uid


def validate_uid(value: object, attribute: str) -> str:
    """A UID safe to use as a path component (:func:`dicom_node.uids.is_uid`), else an error naming the attribute."""
    text = str(value or "").strip().rstrip("\x00")
    if not text:
        raise InvalidIdentifierError(f"{attribute} is missing or blank")
    if len(text) > 64:
        raise InvalidIdentifierError(f"{attribute} is longer than 64 characters")
    if not is_uid(text):
        raise InvalidIdentifierError(f"{attribute} is not a UID (digits and dots only)")
    return text


@dataclass(frozen=True)
class StoredInstance:
    path: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    new: bool  # False: a copy was already on disk


class Spool:
    def __init__(self, root: Path, disk_floor_mb: float = 0.0) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.disk_floor_bytes = int(disk_floor_mb * 1024 * 1024)
        self._dir_lock = threading.Lock()

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str | None = None) -> Path:
        parts = [validate_uid(study_uid, "StudyInstanceUID"), validate_uid(series_uid, "SeriesInstanceUID")]
        if sop_uid is not None:
            parts.append(validate_uid(sop_uid, "SOPInstanceUID") + ".dcm")
        path = Path(os.path.normpath(os.path.join(self.root, *parts)))  # lexical: no syscalls per instance
        if not path.is_relative_to(self.root):  # cannot happen after validation; kept as the last guard
            raise InvalidIdentifierError("identifier resolves outside the spool")
        return path

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def check_space(self) -> None:
        if self.disk_floor_bytes and self.free_bytes() < self.disk_floor_bytes:
            raise OutOfResources(
                f"free disk under the spool is below the configured floor of {self.disk_floor_bytes // 2**20} MB")

    def store(self, study_uid: str, series_uid: str, sop_uid: str, write: Callable[[object], None]) -> StoredInstance:
        """Write one instance durably; ``write(fileobj)`` writes the whole DICOM file."""
        final = self.path_for(study_uid, series_uid, sop_uid)
        if final.exists():
            return StoredInstance(final, study_uid, series_uid, sop_uid, new=False)
        self.check_space()
        temp = final.with_name(f".{final.name}.{threading.get_ident()}.part")
        try:
            self._ensure_dir(final.parent)
            with open(temp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk filled up between check and write
                raise OutOfResources(f"the disk under the spool is full ({exc.strerror})") from None
            raise NodeError(f"cannot write to the spool ({exc.strerror})", code="node.spool_write",
                            status=CANNOT_WRITE) from None
        return StoredInstance(final, study_uid, series_uid, sop_uid, new=True)

    def _ensure_dir(self, folder: Path) -> None:
        if folder.is_dir():
            return
        with self._dir_lock:
            missing = [p for p in (folder.parent, folder) if not p.is_dir()]
            folder.mkdir(parents=True, exist_ok=True)
            for p in missing:
                _fsync_dir(p.parent)

    def series_dirs(self) -> Iterator[tuple[str, str, Path]]:
        """(study, series, folder) of every series on disk (used to recover after a crash)."""
        for study in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for series in sorted(p for p in study.iterdir() if p.is_dir()):
                yield study.name, series.name, series

    def instances(self, study_uid: str, series_uid: str) -> list[Path]:
        folder = self.path_for(study_uid, series_uid)
        return sorted(folder.glob("*.dcm")) if folder.is_dir() else []

    def remove_partials(self) -> int:
        """Delete temporary files a crash left behind (never acknowledged). Returns how many."""
        count = 0
        for part in self.root.glob("*/*/.*.part"):
            part.unlink(missing_ok=True)
            count += 1
        return count


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
