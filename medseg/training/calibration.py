"""Choose the post-processing lesion filters of a trained model on validation data.

``postprocess`` drops a predicted component smaller than ``min_lesion_ml`` or whose peak
probability is below ``min_peak_probability``. Both trade missed lesions against false alarms,
so ``medseg train`` picks them after training, on data used neither for training nor for the
held-out metrics, and records the whole sweep in the manifest:

* a phantom model (``calibrate_lesion_filters``): validation phantom seeds;
* a real-CT model (``calibrate_on_real_ct``): the validation sarcoma cases (``STS_VALIDATION``)
  for Dice and the validation slab of the whole chest CT (``medseg.training.real_ct``) for false
  positives, sweeping the voxel threshold too (``voxel_threshold``: below 0.5 with a peak filter of
  0.5 or more it is hysteresis, which recovers the rim of a tumor an under-calling network is
  unsure of). The triple kept is the best mean validation Dice among those that leave at most
  ``MAX_VALIDATION_FALSE_POSITIVES`` false-positive lesions on that slab.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from medseg.core.phantom import generate_phantom
from medseg.core.pipeline.segment import Predictor, Preprocessed, crop_labels, infer, preprocess
from medseg.core.pipeline.spec import PipelineSpec
from medseg.core.volume import Volume

VALIDATION_PHANTOM_SEED0 = 800_000
PEAK_PROBABILITY_CANDIDATES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
#: 0.05 mL (a 4.6 mm sphere; the only size before 2.0.0) threw away every 3-4.5 mm tumor
#: whatever the network said
MIN_LESION_ML_CANDIDATES = (0.005, 0.01, 0.02, 0.05, 0.1)
#: real-CT models: sarcomas are large (the 28 cases: 8-1500 mL), so larger sizes are swept too
REAL_MIN_LESION_ML_CANDIDATES = (0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
#: the target is at most 1 false-positive lesion per whole CT (275 slices); the validation slab
#: is 60 of them, so the budget there is 0 (1 would allow 4.6 per whole CT)
MAX_VALIDATION_FALSE_POSITIVES = 0
VOXEL_THRESHOLD_CANDIDATES = (0.5, 0.4, 0.3, 0.2)


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
        tables.append(predicted_components(network, spec, ph.image, ph.truth)[spec.voxel_threshold])
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


def calibrate_on_real_ct(
    network: Predictor,
    spec: PipelineSpec,
    cases: list[tuple[str, Volume, Volume]],
    whole_ct: tuple[Volume, Volume],
    min_lesion_ml: float | None = None,
    min_peak_probability: float | None = None,
    voxel_threshold: float | None = None,
) -> dict:
    """Pick the voxel threshold and both filters on real validation data: ``cases`` (name, CT,
    expert mask) score the Dice, ``whole_ct`` (CT, truth) counts false-positive lesions
    (components touching no truth).

    Among the triples with at most ``MAX_VALIDATION_FALSE_POSITIVES`` false positives on
    ``whole_ct`` the best mean Dice wins (ties: the plainest, i.e. the highest voxel threshold,
    then the lowest filters); if none is that quiet, the quietest compete on Dice, and
    ``within_budget`` says so. A value given as an argument is not swept.
    """
    thresholds = VOXEL_THRESHOLD_CANDIDATES if voxel_threshold is None else (voxel_threshold,)
    tables = {name: predicted_components(network, spec, image, truth, thresholds) for name, image, truth in cases}
    quiet = predicted_components(network, spec, *whole_ct, thresholds)
    sweep = {}
    for t in thresholds:
        for size in REAL_MIN_LESION_ML_CANDIDATES if min_lesion_ml is None else (min_lesion_ml,):
            for peak in PEAK_PROBABILITY_CANDIDATES if min_peak_probability is None else (min_peak_probability,):
                sweep[t, size, peak] = (float(np.mean([filtered_dice(c[t], size, peak) for c in tables.values()])),
                                        false_positive_lesions(quiet[t], size, peak))
    fewest = min(fp for _, fp in sweep.values())
    allowed = max(fewest, MAX_VALIDATION_FALSE_POSITIVES)
    best = max(dice for dice, fp in sweep.values() if fp <= allowed)
    t, size, peak = min((key for key, (dice, fp) in sweep.items() if fp <= allowed and dice >= best - 1e-9),
                        key=lambda k: (-k[0], k[1], k[2]))
    return {"validation_cases": sorted(tables),
            "per_case_dice": {name: round(filtered_dice(c[t], size, peak), 4) for name, c in tables.items()},
            "whole_ct_false_positive_budget": MAX_VALIDATION_FALSE_POSITIVES,
            "within_budget": fewest <= MAX_VALIDATION_FALSE_POSITIVES,
            "sweep": {f"voxel_threshold={a} min_lesion_ml={b} min_peak_probability={c}":
                      {"mean_dice": round(d, 4), "whole_ct_false_positives": fp}
                      for (a, b, c), (d, fp) in sweep.items()},
            "chosen": {"voxel_threshold": t, "min_lesion_ml": size, "min_peak_probability": peak,
                       "mean_dice": round(sweep[t, size, peak][0], 4),
                       "whole_ct_false_positives": sweep[t, size, peak][1]}}


def predicted_components(network: Predictor, spec: PipelineSpec, image: Volume, truth: Volume,
                         thresholds: tuple[float, ...] | None = None) -> dict[float, "ComponentTable"]:
    """The unfiltered components the full pipeline (body mask, flip check) predicts on ``image``,
    per voxel threshold (one inference for all)."""
    prep = preprocess(image, spec)
    probabilities = infer(prep.tensor, network, spec, body=prep.body)
    return {t: component_table(image, truth, prep, probabilities, dataclasses.replace(spec, voxel_threshold=t))
            for t in thresholds or (spec.voxel_threshold,)}


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


def _kept(table: ComponentTable, min_lesion_ml: float, min_peak_probability: float) -> np.ndarray:
    """``postprocess``'s keep rule, verbatim."""
    return ~(table.voxels < min_lesion_ml / table.voxel_ml) & (table.peak_probability >= min_peak_probability)


def filtered_dice(table: ComponentTable, min_lesion_ml: float, min_peak_probability: float) -> float:
    """The Dice ``postprocess`` with these filters would score."""
    kept = _kept(table, min_lesion_ml, min_peak_probability)
    total = table.voxels[kept].sum() + table.truth_voxels
    return 2.0 * float(table.overlap[kept].sum()) / total if total else 1.0


def false_positive_lesions(table: ComponentTable, min_lesion_ml: float, min_peak_probability: float) -> int:
    """How many components ``postprocess`` with these filters keeps that touch no truth voxel."""
    kept = _kept(table, min_lesion_ml, min_peak_probability)
    return int((kept & (table.overlap == 0)).sum())


def component_table(image: Volume, truth_volume: Volume, prep: Preprocessed, probabilities: torch.Tensor,
                    spec: PipelineSpec) -> ComponentTable:
    labels, confidence = crop_labels(probabilities, prep, spec)
    components, _ = ndimage.label(labels > 0, structure=np.ones((3, 3, 3), bool))
    truth = prep.reorientation.apply(truth_volume.array)[prep.crop] > 0
    voxels = np.bincount(components.ravel())[1:]
    overlap = np.bincount(components.ravel(), weights=truth.ravel(), minlength=len(voxels) + 1)[1:]
    peaks = np.array([confidence[box][components[box] == i].max()
                      for i, box in enumerate(ndimage.find_objects(components), start=1)])
    return ComponentTable(voxels, peaks.reshape(-1), overlap, image.voxel_volume_ml, int((truth_volume.array > 0).sum()))
