"""NIfTI in and out, converted at the edge to the Volume convention (LPS, k-r-c)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.core.exceptions import NiftiError
from medseg.core.volume import Volume, affine_from_nifti, affine_to_nifti

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return Path(path).is_file() and str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: Path) -> Volume:
    """Read a 3-D NIfTI image; refuse unusable affines instead of guessing."""
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for damaged files
        raise NiftiError(f"{Path(path).name}: unreadable NIfTI ({type(exc).__name__})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise NiftiError(f"{Path(path).name}: expected a 3-D image, got shape {data.shape}")
    header = image.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        raise NiftiError("NIfTI affine: sform_code and qform_code are both 0 (no patient-space geometry)",
                         code="nifti.no_affine")
    affine = image.affine
    if not np.all(np.isfinite(affine)):
        raise NiftiError("NIfTI affine: contains NaN or infinite values", code="nifti.broken_affine")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise NiftiError("NIfTI affine: singular (zero voxel size or collinear axes)", code="nifti.broken_affine")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise NiftiError("NIfTI data: contains NaN or infinite voxels", code="nifti.nonfinite")
    array = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return Volume(array, affine_from_nifti(affine))


def write_nifti(volume: Volume, path: Path, dtype=None) -> None:
    data = np.transpose(volume.array, (2, 1, 0))
    if dtype is not None:
        data = data.astype(dtype)
    image = nib.Nifti1Image(data, affine_to_nifti(volume.affine))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    nib.save(image, str(path))
