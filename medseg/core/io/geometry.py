"""Validate a single-frame series' geometry and derive its exact affine.

Runs before any pixel is decoded. Each rule violation raises a
:class:`~medseg.core.exceptions.GeometryError` naming the attribute and the rule.
Tolerances are explicit and configurable (:class:`~medseg.core.io.rules.GeometryTolerances`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from medseg.core.exceptions import GeometryError
from medseg.core.io.rules import GeometryTolerances

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def _required(ds: Dataset, keyword: str, index: int):
    value = getattr(ds, keyword, None)
    if value in (None, ""):
        raise GeometryError(keyword, "required attribute missing", f"slice {index}")
    return value


def sort_and_check(
    headers: Sequence[Dataset], tol: GeometryTolerances | None = None
) -> tuple[list[int], np.ndarray]:
    """Return the slice order (indices into ``headers``) and the LPS affine.

    The affine maps ``(k, r, c)`` of the sorted stack to patient coordinates;
    slices are ordered by position along the slice normal, ascending.
    """
    tol = tol or GeometryTolerances()
    if len(headers) < 2:
        raise GeometryError("ImagePositionPatient", "at least two slices are needed", "single slice")
    iops = np.array([[float(v) for v in _required(ds, "ImageOrientationPatient", i)] for i, ds in enumerate(headers)])
    if iops.shape[1] != 6:
        raise GeometryError("ImageOrientationPatient", "must have 6 values")
    if np.max(np.abs(iops - iops[0])) > tol.orientation:
        raise GeometryError("ImageOrientationPatient", "inconsistent within series", "mixed orientations")
    row, col = iops[0, :3], iops[0, 3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise GeometryError("ImageOrientationPatient", "direction cosines must be orthonormal")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)

    for keyword in ("Rows", "Columns"):
        values = {int(_required(ds, keyword, i)) for i, ds in enumerate(headers)}
        if len(values) > 1:
            raise GeometryError(keyword, "inconsistent within series", f"{sorted(values)}")
    spacings = np.array([[float(v) for v in _required(ds, "PixelSpacing", i)] for i, ds in enumerate(headers)])
    if spacings.shape[1] != 2 or np.any(spacings <= 0):
        raise GeometryError("PixelSpacing", "must be two positive values")
    if np.max(np.abs(spacings - spacings[0])) > tol.pixel_spacing_mm:
        raise GeometryError("PixelSpacing", "inconsistent within series")

    positions = np.array([[float(v) for v in _required(ds, "ImagePositionPatient", i)] for i, ds in enumerate(headers)])
    if positions.shape[1] != 3:
        raise GeometryError("ImagePositionPatient", "must have 3 values")
    distance = positions @ normal
    order = np.argsort(distance, kind="stable")
    distance, positions = distance[order], positions[order]
    gaps = np.diff(distance)
    if np.any(gaps < 1e-3):
        k = int(np.argmax(gaps < 1e-3))
        raise GeometryError("ImagePositionPatient", "duplicate slice position", f"sorted slices {k} and {k + 1}")

    step = positions[-1] - positions[0]
    cos_tilt = abs(step @ normal) / np.linalg.norm(step)
    tilt = float(np.degrees(np.arccos(min(1.0, cos_tilt))))
    if tilt > tol.tilt_degrees:
        raise GeometryError("ImagePositionPatient", "gantry tilt (slices sheared along the stack)", f"{tilt:.2f} deg")

    median = float(np.median(gaps))
    deviation = np.abs(gaps - median) / median
    if np.any(deviation > tol.slice_spacing):
        k = int(np.argmax(deviation))
        ratio = gaps[k] / median
        if abs(ratio - round(ratio)) <= tol.slice_spacing and round(ratio) >= 2:
            raise GeometryError(
                "ImagePositionPatient",
                "missing slice",
                f"{int(round(ratio)) - 1} slice(s) missing after sorted slice {k}",
            )
        raise GeometryError(
            "ImagePositionPatient",
            "non-uniform slice spacing",
            f"gap {gaps[k]:.3f} mm vs median {median:.3f} mm (tolerance {tol.slice_spacing:.0%})",
        )

    row_spacing, col_spacing = spacings[0]  # PixelSpacing = (between rows, between columns)
    affine = np.eye(4)
    affine[:3, 0] = step / (len(headers) - 1)
    affine[:3, 1] = col * row_spacing
    affine[:3, 2] = row * col_spacing
    affine[:3, 3] = positions[0]
    return [int(i) for i in order], affine
