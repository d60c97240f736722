"""Per-review quality numbers: the model's mask against the radiologist's corrected mask.

A pure function (no I/O): ``score_review(predicted, reference)`` with both masks on the same
source grid (a :class:`medseg.core.volume.Volume` each, so spacing and patient coordinates are exact).

Definitions (the reference is the radiologist's corrected mask; foreground = any label > 0):

* **Dice**: :func:`medseg.core.scoring.dice` (MONAI ``compute_dice``). Both masks empty -> 1.0.
* **Voxel false-negative rate**: reference tumor volume the model missed / reference tumor volume.
  Undefined (None) when the reference is empty.
* **False-positive volume** (mL): predicted foreground outside the reference.
* **Volume difference** (mL): predicted minus reference volume (negative = under-segmentation).
* **Lesions** are 26-connected components (as in :mod:`medseg.core.scoring`); a lesion's size is its
  equivalent-sphere diameter ``(6 V / pi)^(1/3)``. A reference lesion is **detected** when at least
  10 % of its voxels are predicted foreground (``DETECTION_OVERLAP``: one stray touching voxel is not
  a detection, a correctly placed but under-sized contour is). A predicted lesion that touches no
  reference voxel is a **false-positive lesion**. Missed lesions are listed with diameter, volume
  and centroid in patient coordinates (LPS, mm).
* **HD95 / mean surface distance** (mm, symmetric): MONAI's boundary-voxel surface distances with
  the voxel spacing, as ``compute_hausdorff_distance(percentile=95)`` and
  ``compute_average_surface_distance(symmetric=True)`` define them. Undefined
  (None) when either mask is empty.

Every number is computed inside the bounding box of the union of both masks plus one voxel:
all of them are invariant to that crop (no foreground or surface lies outside it), and it keeps
a review of a 512x512x200 study well under a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from medseg.core.scoring import DETECTION_OVERLAP, dice
from medseg.core.volume import Volume

STRUCTURE = np.ones((3, 3, 3), bool)
LARGE_LESION_MM = 10.0


@dataclass(frozen=True)
class LesionRecord:
    diameter_mm: float
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    overlap: float  # fraction of its voxels covered by the other mask


@dataclass
class ReviewScores:
    dice: float
    fn_rate: float | None
    fp_volume_ml: float
    volume_diff_ml: float
    reference_volume_ml: float
    predicted_volume_ml: float
    hd95_mm: float | None
    msd_mm: float | None
    reference_lesions: int = 0
    detected_lesions: int = 0
    reference_lesions_ge10: int = 0
    detected_lesions_ge10: int = 0
    false_positive_lesions: int = 0
    missed: list[LesionRecord] = field(default_factory=list)

    @property
    def lesion_sensitivity(self) -> float | None:
        return self.detected_lesions / self.reference_lesions if self.reference_lesions else None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["lesion_sensitivity"] = self.lesion_sensitivity
        return out


def _union_box(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of a | b plus one voxel (from per-axis projections: no labelling of the volume)."""
    box = []
    for axis in range(3):
        others = tuple(d for d in range(3) if d != axis)
        hit = np.flatnonzero(np.any(a, axis=others) | np.any(b, axis=others))
        if hit.size == 0:
            return None
        box.append(slice(max(0, int(hit[0]) - 1), min(a.shape[axis], int(hit[-1]) + 2)))
    return tuple(box)


def _surface_distances(pred: np.ndarray, ref: np.ndarray, spacing) -> tuple[float | None, float | None]:
    """Symmetric HD95 and mean surface distance from one pass of MONAI's edge distances: the same
    numbers as ``compute_hausdorff_distance(percentile=95)`` and ``compute_average_surface_distance(
    symmetric=True)`` (tested), which would each find the edges and distances again."""
    if not pred.any() or not ref.any():
        return None, None
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    _, distances, _ = get_edge_surface_distance(torch.from_numpy(pred), torch.from_numpy(ref), spacing=list(spacing),
                                                symmetric=True)
    hd95 = max(float(torch.quantile(d.float(), 0.95)) for d in distances)
    return hd95, float(torch.cat(distances).float().mean())


def _lesions(mask: np.ndarray, other: np.ndarray, volume: Volume, offset) -> list[LesionRecord]:
    components, count = ndimage.label(mask, structure=STRUCTURE)
    records = []
    voxel_ml = volume.voxel_volume_ml
    for i, box in enumerate(ndimage.find_objects(components), start=1):
        member = components[box] == i
        size = int(member.sum())
        covered = int(other[box][member].sum())
        centroid = np.array(ndimage.center_of_mass(member)) + [b.start for b in box] + offset
        records.append(LesionRecord(
            diameter_mm=round(float((6.0 * size * voxel_ml * 1000.0 / np.pi) ** (1 / 3)), 1),
            volume_ml=round(size * voxel_ml, 3),
            centroid_lps_mm=tuple(round(float(v), 1) for v in volume.index_to_lps(centroid)),  # type: ignore[arg-type]
            overlap=covered / size,
        ))
    return records


def score_review(predicted: Volume, reference: Volume) -> ReviewScores:
    """Quality of ``predicted`` (the model's mask) against ``reference`` (the corrected mask)."""
    if predicted.shape != reference.shape or not np.allclose(predicted.affine, reference.affine, atol=1e-3):
        raise ValueError("predicted and reference masks are not on the same grid")
    voxel_ml = predicted.voxel_volume_ml
    box = _union_box(predicted.array > 0, reference.array > 0)
    if box is None:  # both empty: agreement on "no tumor"
        return ReviewScores(dice=1.0, fn_rate=None, fp_volume_ml=0.0, volume_diff_ml=0.0, reference_volume_ml=0.0,
                            predicted_volume_ml=0.0, hd95_mm=None, msd_mm=None)
    p = np.ascontiguousarray(predicted.array[box] > 0)
    r = np.ascontiguousarray(reference.array[box] > 0)
    offset = np.array([s.start for s in box], float)
    n_p, n_r, n_tp = int(p.sum()), int(r.sum()), int(np.logical_and(p, r).sum())
    hd95, msd = _surface_distances(p, r, predicted.spacing)
    ref_lesions = _lesions(r, p, reference, offset)
    pred_lesions = _lesions(p, r, predicted, offset)
    detected = [les.overlap >= DETECTION_OVERLAP for les in ref_lesions]
    large = [les.diameter_mm >= LARGE_LESION_MM for les in ref_lesions]
    return ReviewScores(
        dice=dice(p, r),
        fn_rate=(n_r - n_tp) / n_r if n_r else None,
        fp_volume_ml=round((n_p - n_tp) * voxel_ml, 3),
        volume_diff_ml=round((n_p - n_r) * voxel_ml, 3),
        reference_volume_ml=round(n_r * voxel_ml, 3),
        predicted_volume_ml=round(n_p * voxel_ml, 3),
        hd95_mm=hd95, msd_mm=msd,
        reference_lesions=len(ref_lesions),
        detected_lesions=sum(detected),
        reference_lesions_ge10=sum(large),
        detected_lesions_ge10=sum(d and g for d, g in zip(detected, large)),
        false_positive_lesions=sum(les.overlap == 0 for les in pred_lesions),
        missed=[les for les, hit in zip(ref_lesions, detected) if not hit],
    )
