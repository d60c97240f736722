"""Choose the post-processing lesion filters of a trained model on validation phantoms.

``postprocess`` drops a predicted component smaller than ``min_lesion_ml`` or whose peak
probability is below ``min_peak_probability``. Both trade missed lesions against false alarms,
so ``medseg train`` picks them after training on phantom seeds used neither for training nor
for the held-out metrics, and records the whole sweep in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from medseg.core.phantom import Phantom, generate_phantom
from medseg.core.pipeline.segment import Predictor, Preprocessed, crop_labels, infer, preprocess
from medseg.core.pipeline.spec import PipelineSpec

VALIDATION_PHANTOM_SEED0 = 800_000
PEAK_PROBABILITY_CANDIDATES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
#: 0.05 mL (a 4.6 mm sphere; the only size before 2.0.0) threw away every 3-4.5 mm tumor
#: whatever the network said
MIN_LESION_ML_CANDIDATES = (0.005, 0.01, 0.02, 0.05, 0.1)


def calibrate_lesion_filters(
    network: Predictor,
    spec: PipelineSpec,
    phantoms: int,
    min_lesion_ml: float | None = None,
    min_peak_probability: float | None = None,
) -> dict:
    """Pick ``min_peak_probability`` and ``min_lesion_ml`` on validation phantoms.

    The validation seeds are neither training nor held-out seeds. Score: mean per-study Dice over
    all studies, where a tumor-free study scores 1 without and 0 with a false positive, so the
    score trades lost lesions against false alarms. A filter given as an argument is not swept.
    Ties go to the lower thresholds (fewer lesions thrown away).
    """
    tables = []
    for i in range(phantoms):
        ph = generate_phantom(VALIDATION_PHANTOM_SEED0 + i)
        prep = preprocess(ph.image, spec)
        tables.append(component_table(ph, prep, infer(prep.tensor, network, spec, body=prep.body), spec))
    peaks = PEAK_PROBABILITY_CANDIDATES if min_peak_probability is None else (min_peak_probability,)
    sizes = MIN_LESION_ML_CANDIDATES if min_lesion_ml is None else (min_lesion_ml,)
    scores = {}
    for size in sizes:
        for peak in peaks:
            scores[size, peak] = float(np.mean([filtered_dice(table, size, peak) for table in tables]))
    best = max(scores.values())
    size, peak = min(key for key, v in scores.items() if v >= best - 1e-9)
    return {"seeds": [VALIDATION_PHANTOM_SEED0, VALIDATION_PHANTOM_SEED0 + phantoms - 1],
            "mean_dice": {f"min_lesion_ml={a} min_peak_probability={b}": round(v, 4) for (a, b), v in scores.items()},
            "chosen": {"min_lesion_ml": size, "min_peak_probability": peak}}


@dataclass
class ComponentTable:
    """Per predicted component before filtering: voxels, peak probability, voxels on the truth.

    Dice after any size/peak filter follows from these sums (``filtered_dice``), so sweeping the
    filters costs one postprocess per study instead of one per study and candidate pair.
    """

    voxels: np.ndarray
    peak_probability: np.ndarray
    overlap: np.ndarray
    voxel_ml: float
    truth_voxels: int


def filtered_dice(table: ComponentTable, min_lesion_ml: float, min_peak_probability: float) -> float:
    """The Dice ``postprocess`` with these filters would score (its keep rule, verbatim)."""
    kept = ~(table.voxels < min_lesion_ml / table.voxel_ml) & (table.peak_probability >= min_peak_probability)
    total = table.voxels[kept].sum() + table.truth_voxels
    return 2.0 * float(table.overlap[kept].sum()) / total if total else 1.0


def component_table(ph: Phantom, prep: Preprocessed, probabilities: torch.Tensor, spec: PipelineSpec) -> ComponentTable:
    labels, confidence = crop_labels(probabilities, prep, spec)
    components, _ = ndimage.label(labels > 0, structure=np.ones((3, 3, 3), bool))
    truth = prep.reorientation.apply(ph.truth.array)[prep.crop] > 0
    voxels = np.bincount(components.ravel())[1:]
    overlap = np.bincount(components.ravel(), weights=truth.ravel(), minlength=len(voxels) + 1)[1:]
    peaks = np.array([confidence[box][components[box] == i].max()
                      for i, box in enumerate(ndimage.find_objects(components), start=1)])
    return ComponentTable(voxels, peaks.reshape(-1), overlap, ph.image.voxel_volume_ml, int((ph.truth.array > 0).sum()))
