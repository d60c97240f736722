"""Quality numbers for a predicted mask against a reference mask on the same grid.

Definitions (documented here once, used by ``medseg train``/``medseg evaluate``):

* **Dice** of foreground (any label > 0). Both empty -> 1.0 (perfect
  agreement on "no tumor"); reference empty but prediction not -> 0.0.
* **Global Dice** pools voxels over all studies (as in the LiTS challenge): it weighs
  studies by tumor volume, where the per-study mean weighs a study whose only tumor is a
  3 mm nodule as much as one with a 4 cm mass.
* **Lesions** are 26-connected components of the foreground. A lesion's size
  is its equivalent-sphere diameter ``(6 V / pi)^(1/3)`` in mm.
* A reference lesion is **detected** when at least ``DETECTION_OVERLAP``
  (10 %) of its voxels are predicted foreground.
* A predicted lesion is a **false positive** when none of its voxels touch
  reference foreground.
* Means and sensitivities come with a 95 % interval (``*_ci95``; ``medseg.core.stats``: Student's t
  for the mean Dice, Wilson for a sensitivity): a held-out set of 8 cases measures a mean Dice to
  about +- 0.2, and a report that gives the mean alone invites reading the second decimal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medseg.core.stats import REPORT_CONFIDENCE, mean_ci, proportion_ci

DETECTION_OVERLAP = 0.10
_STRUCTURE = np.ones((3, 3, 3), bool)


@dataclass
class CaseMetrics:
    dice: float
    reference_lesions: list[tuple[float, bool]] = field(default_factory=list)  # (diameter mm, detected)
    false_positive_lesions: int = 0
    reference_empty: bool = False
    overlap_voxels: int = 0
    total_voxels: int = 0  # predicted + reference foreground

    def as_dict(self) -> dict:
        return {
            "dice": round(self.dice, 4),
            "reference_lesions": [{"diameter_mm": round(d, 1), "detected": hit} for d, hit in self.reference_lesions],
            "false_positive_lesions": self.false_positive_lesions,
        }


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of the foregrounds (any label > 0), MONAI's ``compute_dice``; both empty -> 1.0
    (agreement on "no tumor"). The one Dice of medseg: evaluation, the gate, shadow runs, reviews."""
    import torch
    from monai.metrics import compute_dice

    p = torch.from_numpy(np.ascontiguousarray(prediction > 0))[None, None]
    r = torch.from_numpy(np.ascontiguousarray(reference > 0))[None, None]
    return float(compute_dice(p, r, include_background=True, ignore_empty=False).item())


def evaluate_case(prediction: np.ndarray, reference: np.ndarray, voxel_ml: float) -> CaseMetrics:
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ in shape")
    p, r = prediction > 0, reference > 0
    overlap, total = int(np.logical_and(p, r).sum()), int(p.sum()) + int(r.sum())
    metrics = CaseMetrics(dice=2.0 * overlap / total if total else 1.0, reference_empty=not r.any(),
                          overlap_voxels=overlap, total_voxels=total)
    components, count = ndimage.label(r, structure=_STRUCTURE)
    if count:
        index = np.arange(1, count + 1)
        sizes = ndimage.sum_labels(np.ones_like(components, np.uint8), components, index)
        hits = ndimage.sum_labels(p, components, index)
        for size, hit in zip(sizes, hits):
            diameter = (6.0 * size * voxel_ml * 1000.0 / np.pi) ** (1.0 / 3.0)
            metrics.reference_lesions.append((float(diameter), bool(hit >= DETECTION_OVERLAP * size)))
    predicted, count = ndimage.label(p, structure=_STRUCTURE)
    if count:
        touching = ndimage.sum_labels(r, predicted, np.arange(1, count + 1))
        metrics.false_positive_lesions = int(np.sum(touching == 0))
    return metrics


def summarize(cases: list[CaseMetrics], min_diameter_mm: float = 10.0) -> dict:
    """Aggregate over studies: mean Dice (over studies with tumor), sensitivity, FP rate."""
    with_tumor = [c.dice for c in cases if not c.reference_empty]
    large = [hit for c in cases for d, hit in c.reference_lesions if d >= min_diameter_mm]
    every = [hit for c in cases for _, hit in c.reference_lesions]
    empty = [c for c in cases if c.reference_empty]
    pooled = sum(c.total_voxels for c in cases)
    return {
        "studies": len(cases),
        "studies_with_tumor": len(with_tumor),
        "mean_dice": round(float(np.mean(with_tumor)), 4) if with_tumor else None,
        "mean_dice_ci95": mean_ci(with_tumor, REPORT_CONFIDENCE).interval(),
        "median_dice": round(float(np.median(with_tumor)), 4) if with_tumor else None,
        "global_dice": round(2 * sum(c.overlap_voxels for c in cases) / pooled, 4) if pooled else None,
        f"lesion_sensitivity_ge_{int(min_diameter_mm)}mm": round(float(np.mean(large)), 4) if large else None,
        f"lesions_ge_{int(min_diameter_mm)}mm": len(large),
        "lesion_sensitivity_all": round(float(np.mean(every)), 4) if every else None,
        "lesion_sensitivity_all_ci95": proportion_ci(sum(every), len(every), REPORT_CONFIDENCE).interval(),
        "false_positive_lesions_per_study": round(float(np.mean([c.false_positive_lesions for c in cases])), 4),
        "empty_studies_correct": f"{sum(1 for c in empty if c.false_positive_lesions == 0)}/{len(empty)}",
    }
