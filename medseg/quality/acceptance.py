"""A site's acceptance measurement: any model version (ours or an imported MONAI bundle) on the
site's own labelled cases, with the definitions of ``medseg.core.scoring`` and 95 % intervals.

A hospital that brings a validated model checks it on a few of its own cases before it promotes
it (``medseg evaluate --model NAME/VERSION --cases DIR``); a silent model review later shows how
it does in use. ``DIR`` holds one folder per case, each with an image and its reference mask as
NIfTI on the same grid (the layout of the TCIA sarcoma crops and of the gate's reference case):

* image: ``CT_image.nii.gz``, ``image.nii.gz`` or ``image.nii``;
* mask: ``CT_mask.nii.gz``, ``mask.nii.gz``, ``label.nii.gz``, ``mask.nii`` or ``label.nii``;
  label values are the model's (``manifest.labels``); for a lesion model any value above 0 is tumor.
  The mask's voxels must be the image's, in any axis order and direction (``core.volume.on_grid``,
  as for a radiologist's corrected NIfTI): values are moved, never resampled.

Each case runs the version's own pipeline (``LoadedModel.segment``: medseg's, or the bundle's).
A lesion model is scored as ``medseg evaluate`` scores its held-out cases (Dice of the foreground,
lesion detection, false-positive lesions); a structure model per label: Dice of that label, over
the cases whose reference or result holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.core.exceptions import InputError
from medseg.core.scoring import dice, evaluate_case, summarize
from medseg.core.stats import REPORT_CONFIDENCE, mean_ci
from medseg.core.volume import on_grid

IMAGE_NAMES = ("CT_image.nii.gz", "image.nii.gz", "image.nii")
MASK_NAMES = ("CT_mask.nii.gz", "mask.nii.gz", "label.nii.gz", "mask.nii", "label.nii")


def find_cases(root: Path) -> list[tuple[str, Path, Path]]:
    """(name, image, mask) of every case folder below ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--cases {root.name}: not a folder", code="evaluate.no_cases")
    cases, incomplete = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        image = next((folder / n for n in IMAGE_NAMES if (folder / n).is_file()), None)
        mask = next((folder / n for n in MASK_NAMES if (folder / n).is_file()), None)
        if image and mask:
            cases.append((folder.name, image, mask))
        elif image or mask:
            incomplete.append(folder.name)
    if incomplete:
        raise InputError(f"case folder(s) {', '.join(incomplete[:3])}{' ...' if len(incomplete) > 3 else ''} hold an "
                         f"image without a mask or a mask without an image (names: {IMAGE_NAMES[0]} and "
                         f"{MASK_NAMES[0]}, or image.nii.gz and mask.nii.gz)", code="evaluate.case_incomplete")
    if not cases:
        raise InputError(f"--cases {root.name}: no case folder with an image and a mask "
                         f"({IMAGE_NAMES[0]} and {MASK_NAMES[0]}, or image.nii.gz and mask.nii.gz)",
                         code="evaluate.no_cases")
    return cases


def evaluate_cases(model, root: Path, progress: Callable[[str], None] | None = None) -> dict:
    """``model``: a ``LoadedModel``. The summary, and each case's numbers under ``per_case``."""
    from medseg.core.io.nifti import read_nifti

    report = progress or (lambda stage: None)
    manifest = model.manifest
    per_label = manifest.task.finding == "structure" or len(manifest.labels) > 1
    cases = find_cases(root)
    results: dict[str, dict] = {}
    scored, label_dice = [], {spec.name: [] for spec in manifest.labels}
    for i, (name, image_path, mask_path) in enumerate(cases, 1):
        report(f"case {i} of {len(cases)}")
        image, reference = read_nifti(image_path), read_nifti(mask_path)
        truth = on_grid(reference, image)
        if truth is None:
            raise InputError(f"case {name}: the mask is not on the image's grid (shape {reference.shape} vs "
                             f"{image.shape}, or another spacing, position or orientation)", code="evaluate.mask_grid")
        truth = np.rint(truth).astype(np.int32)
        out = model.segment(image).mask.array
        case = evaluate_case(out, truth, image.voxel_volume_ml)
        scored.append(case)
        results[name] = case.as_dict()
        if per_label:  # a label counts for the cases whose reference or result holds it
            held = {spec.name: dice(out == spec.value, truth == spec.value) for spec in manifest.labels
                    if (out == spec.value).any() or (truth == spec.value).any()}
            results[name]["per_label_dice"] = {k: round(v, 4) for k, v in held.items()}
            for label, value in held.items():
                label_dice[label].append(value)
    summary = {"model": manifest.ref, **summarize(scored), "per_case": results}
    if per_label:
        summary["per_label"] = {label: _mean(values) for label, values in label_dice.items()}
    return summary


def _mean(values: list[float]) -> dict:
    estimate = mean_ci(values, REPORT_CONFIDENCE)
    return {"cases": len(values), "mean_dice": None if estimate.value is None else round(estimate.value, 4),
            "mean_dice_ci95": estimate.interval()}
