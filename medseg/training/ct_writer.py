"""Write a Volume of Hounsfield units as a classic single-frame CT series.

Used for phantoms (``medseg phantom``), tests and benchmarks. Pixels are
stored as unsigned 12-bit values with RescaleIntercept -1024 like most
scanners; ``transfer_syntax`` may be any syntax pydicom can encode
(uncompressed, deflated, RLE, JPEG-LS lossless, JPEG 2000).
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from medseg.core.volume import Volume

_UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}


def ct_datasets(
    volume: Volume,
    *,
    patient_name: str,
    patient_id: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "CT",
    accession_number: str = "",
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    patient_position: str = "HFS",
    body_part: str = "ABDOMEN",
    manufacturer: str = "medseg phantom",
    deidentification_method: str | None = None,
    image_comments: str | None = None,
) -> list[Dataset]:
    """One dataset per slice ``k`` of ``volume`` (HU), geometry taken from its affine.

    ``deidentification_method`` (at most 64 characters) marks a converted real image
    (PatientIdentityRemoved YES, e.g. the source collection and its licence); ``image_comments``
    takes longer text, e.g. the full attribution.
    """
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    affine = volume.affine
    row_dir = affine[:3, 2] / np.linalg.norm(affine[:3, 2])  # along columns index c
    col_dir = affine[:3, 1] / np.linalg.norm(affine[:3, 1])  # along rows index r
    row_spacing, col_spacing = np.linalg.norm(affine[:3, 1]), np.linalg.norm(affine[:3, 2])
    thickness = float(np.linalg.norm(affine[:3, 0]))
    stored = np.clip(np.rint(volume.array + 1024.0), 0, 4095).astype(np.uint16)
    now = dt.datetime.now()
    out = []
    for k in range(volume.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.ImageType = list(image_type)
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.StudyID = "1"
        ds.AccessionNumber = accession_number
        ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.PatientPosition = patient_position
        ds.BodyPartExamined = body_part
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = manufacturer
        if deidentification_method is not None:
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = deidentification_method
        if image_comments is not None:
            ds.ImageComments = image_comments
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in affine[:3, :3] @ [k, 0, 0] + affine[:3, 3]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{row_spacing:.6f}", f"{col_spacing:.6f}"]
        ds.SliceThickness = f"{thickness:.4f}"
        ds.KVP = "120"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = stored[k].tobytes()
        out.append(ds)
    return out


def write_series(
    datasets: list[Dataset], out_dir: Path, transfer_syntax: str = ExplicitVRLittleEndian, **encode_kwargs
) -> list[Path]:
    """Save datasets as ``out_dir/IM<n>.dcm`` in ``transfer_syntax``.

    ``encode_kwargs`` go to pydicom's encoder (e.g. ``j2k_cr=[20]`` for lossy JPEG 2000).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transfer_syntax = UID(transfer_syntax)
    paths = []
    for ds in datasets:
        ds = copy.deepcopy(ds)  # pydicom mutates element values in place: never touch the caller's
        if transfer_syntax not in _UNCOMPRESSED:
            ds.compress(transfer_syntax, **encode_kwargs)
        else:
            ds.file_meta.TransferSyntaxUID = transfer_syntax
        path = out_dir / f"IM{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
