"""The Volume contract: a voxel array plus its exact patient-space geometry.

Conventions (one set, used everywhere in medseg):

* ``array`` is indexed ``array[k, r, c]``: slice, row, column. For a DICOM
  series that is "frames in slice order, each frame as stored": frame ``k`` is
  the ``k``-th source image, so a mask in this layout maps one-to-one onto SEG
  frames.
* ``affine`` is a 4x4 matrix mapping the index vector ``(k, r, c, 1)`` to
  patient coordinates in millimetres in **LPS** (DICOM patient coordinate
  system: +x towards the patient's left, +y posterior, +z superior).
* ``source`` keeps the source images' headers (no pixel data) in slice order,
  which the DICOM-SEG writer needs to reference every instance. It is ``None``
  for volumes read from NIfTI.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    array: np.ndarray
    affine: np.ndarray
    source: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3-D (slice, row, column), got {self.array.ndim}-D")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError("Volume.affine must be a finite 4x4 matrix")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
            raise ValueError("Volume.affine is singular (zero voxel volume)")
        object.__setattr__(self, "affine", affine)
        if self.source is not None and len(self.source) != self.array.shape[0]:
            raise ValueError("Volume.source must hold one header per slice")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (slice, row, column) index axes."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        return abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry and source references, new voxel values."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} does not match the volume's {self.array.shape}")
        return Volume(array, self.affine, self.source)

    def index_to_lps(self, index: Sequence[float]) -> np.ndarray:
        return self.affine[:3, :3] @ np.asarray(index, dtype=np.float64) + self.affine[:3, 3]


# --- exact reorientation (axis permutations and flips only, no interpolation) ---


@dataclass(frozen=True)
class Reorientation:
    """A permutation + flip that brings an array to canonical axes and back.

    Canonical axes are ``(k, r, c) -> (+z S, +y P, +x L)``: a head-first axial
    stack sorted inferior to superior, as most scanners write it. Because only
    axes are swapped and reversed, mapping back is exact.
    """

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def apply(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.perm)
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        return out

    def invert(self, array: np.ndarray) -> np.ndarray:
        out = array
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        return np.transpose(out, np.argsort(self.perm))

    def apply_affine(self, affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """Affine of the reoriented array, given the original array's ``shape``."""
        new_to_old = np.zeros((4, 4))
        new_to_old[3, 3] = 1.0
        for new_axis, old_axis in enumerate(self.perm):
            if self.flips[new_axis]:
                new_to_old[old_axis, new_axis] = -1.0
                new_to_old[old_axis, 3] = shape[old_axis] - 1
            else:
                new_to_old[old_axis, new_axis] = 1.0
        return affine @ new_to_old


def canonical_reorientation(affine: np.ndarray) -> Reorientation:
    """The axis permutation and flips closest to canonical (S, P, L) axes."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    targets = (2, 1, 0)  # new axis 0 follows patient z, 1 follows y, 2 follows x
    best = max(
        itertools.permutations(range(3)),
        key=lambda p: sum(abs(directions[targets[i], p[i]]) for i in range(3)),
    )
    flips = tuple(bool(directions[targets[i], best[i]] < 0) for i in range(3))
    return Reorientation(perm=tuple(best), flips=flips)  # type: ignore[arg-type]


def on_grid(source: Volume, target: Volume, atol_mm: float = 0.01) -> np.ndarray | None:
    """``source``'s voxel values on ``target``'s grid when the two grids are the same voxels up to
    axis order and direction (a mask saved by another tool, another NIfTI convention); values are
    moved, never interpolated, so labels stay labels. None when the grids differ otherwise."""
    mine, theirs = canonical_reorientation(target.affine), canonical_reorientation(source.affine)
    array = theirs.apply(source.array)
    if array.shape != mine.apply(np.empty(target.shape, bool)).shape or not np.allclose(
            mine.apply_affine(target.affine, target.shape), theirs.apply_affine(source.affine, source.shape), atol=atol_mm):
        return None
    return np.ascontiguousarray(mine.invert(array))


# --- NIfTI (RAS, index order i, j, k) <-> Volume (LPS, index order k, r, c) ---


def affine_from_nifti(ras_affine: np.ndarray) -> np.ndarray:
    """LPS affine for ``data.transpose(2, 1, 0)`` of a NIfTI image."""
    swap = np.zeros((4, 4))
    swap[0, 2] = swap[1, 1] = swap[2, 0] = swap[3, 3] = 1.0
    return LPS_TO_RAS @ np.asarray(ras_affine, dtype=np.float64) @ swap


def affine_to_nifti(lps_affine: np.ndarray) -> np.ndarray:
    """RAS affine for ``array.transpose(2, 1, 0)`` of a Volume (inverse of the above)."""
    swap = np.zeros((4, 4))
    swap[0, 2] = swap[1, 1] = swap[2, 0] = swap[3, 3] = 1.0
    return LPS_TO_RAS @ lps_affine @ swap
