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

or, as a PACS exports them, DICOM files (any names, any depth): the image series and one DICOM SEG
of it, the reference. The series measured is the one the SEG references (not the automatic
choice), read with the node's rules. A reference made by hand is told from a result filed beside
it: a SEG medseg made (``Manufacturer`` medseg, every segment AUTOMATIC) is never the reference; of
the other SEGs the only one is, and of several the one whose segments are not all AUTOMATIC
(``SegmentAlgorithmType``); more than one such is refused (``evaluate.case_ambiguous``).
Segments become the model's labels (:func:`reference_labels`): for a lesion model every segment is
the lesion (a reader may outline each tumor as its own segment); for any other model a segment is
the label of the same name (``SegmentLabel``, any case) or, failing that, of the same coded
property type (``SegmentedPropertyTypeCodeSequence``); a SEG with one segment for a one-label model
is that label. Segments matching no label are not scored, and the case's result lists their
numbers (``ignored_segments``); a SEG of which no segment matches is refused (``evaluate.seg_labels``).

Each case runs the version's own pipeline (``LoadedModel.segment``: medseg's, or the bundle's).
A lesion model is scored as ``medseg evaluate`` scores its held-out cases (Dice of the foreground,
lesion detection, false-positive lesions); a structure model per label: Dice of that label, over
the cases whose reference or result holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.core.exceptions import InputError, MedsegError
from medseg.core.labels import LabelSpec
from medseg.core.scoring import dice, evaluate_case, summarize
from medseg.core.stats import REPORT_CONFIDENCE, mean_ci
from medseg.core.volume import Volume, on_grid

IMAGE_NAMES = ("CT_image.nii.gz", "image.nii.gz", "image.nii")
MASK_NAMES = ("CT_mask.nii.gz", "mask.nii.gz", "label.nii.gz", "mask.nii", "label.nii")


def find_cases(root: Path) -> list[tuple[str, Path, Path | None]]:
    """(name, image, mask) of every case folder below ``root``, sorted by name; (name, folder, None)
    for a folder without NIfTI names that holds files (a DICOM case, checked when it is read)."""
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
        elif any(path.is_file() for path in folder.rglob("*")):
            cases.append((folder.name, folder, None))
    if incomplete:
        raise InputError(f"case folder(s) {', '.join(incomplete[:3])}{' ...' if len(incomplete) > 3 else ''} hold an "
                         f"image without a mask or a mask without an image (names: {IMAGE_NAMES[0]} and "
                         f"{MASK_NAMES[0]}, or image.nii.gz and mask.nii.gz)", code="evaluate.case_incomplete")
    if not cases:
        raise InputError(f"--cases {root.name}: no case folder with an image and a mask "
                         f"({IMAGE_NAMES[0]} and {MASK_NAMES[0]}, image.nii.gz and mask.nii.gz, or a DICOM "
                         f"series and its SEG)",
                         code="evaluate.no_cases")
    return cases


def evaluate_cases(model, root: Path, progress: Callable[[str], None] | None = None, *,
                   rules=None, tolerances=None) -> dict:
    """``model``: a ``LoadedModel``; ``rules``/``tolerances``: how a DICOM case is read (the node's
    ``SelectionRules`` and ``GeometryTolerances``). The summary, and each case's numbers under ``per_case``."""
    report = progress or (lambda stage: None)
    manifest = model.manifest
    per_label = manifest.task.finding == "structure" or len(manifest.labels) > 1
    cases = find_cases(root)
    results: dict[str, dict] = {}
    scored, label_dice = [], {spec.name: [] for spec in manifest.labels}
    for i, (name, image_path, mask_path) in enumerate(cases, 1):
        report(f"case {i} of {len(cases)}")
        if mask_path is None:
            image, truth, ignored = dicom_case(name, image_path, manifest, rules, tolerances)
        else:
            (image, truth), ignored = nifti_case(name, image_path, mask_path), []
        out = model.segment(image).mask.array
        case = evaluate_case(out, truth, image.voxel_volume_ml)
        scored.append(case)
        results[name] = case.as_dict()
        if ignored:
            results[name]["ignored_segments"] = ignored
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


def nifti_case(name: str, image_path: Path, mask_path: Path) -> tuple[Volume, np.ndarray]:
    """The image and its reference labels on the image's grid."""
    from medseg.core.io.nifti import read_nifti

    image, reference = read_nifti(image_path), read_nifti(mask_path)
    truth = on_grid(reference, image)
    if truth is None:
        raise InputError(f"case {name}: the mask is not on the image's grid (shape {reference.shape} vs "
                         f"{image.shape}, or another spacing, position or orientation)", code="evaluate.mask_grid")
    return image, np.rint(truth).astype(np.int32)


def dicom_case(name: str, folder: Path, manifest, rules=None, tolerances=None) -> tuple[Volume, np.ndarray, list[int]]:
    """The series a case folder's reference SEG references, the SEG as the model's labels on it, and
    the numbers of the segments that match no label. Any problem is one line naming the case."""
    from medseg.core.io.rules import SelectionRules
    from medseg.core.io.scan import scan_folder
    from medseg.core.io.study import load_study
    from medseg.quality.masks import seg_segments

    try:
        scan = scan_folder(folder)
    except MedsegError as exc:
        raise _in_case(name, exc) from None
    seg_path, seg = _reference_seg(name, [(p, h) for s in scan.series if s.modality == "SEG"
                                          for p, h in zip(s.paths, s.headers)])
    referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
    if not referenced or referenced[0] not in {s.series_uid for s in scan.series}:
        raise InputError(f"case {name}: the SEG references a series that is not in the folder",
                         code="evaluate.case_incomplete")
    try:
        rules = (rules or SelectionRules()).model_copy(update={"series_uid": referenced[0]})
        study = load_study(folder, rules, tolerances, scan=scan)
        uids = [str(h.SOPInstanceUID) for h in study.volume.source]
        pixels, segments = seg_segments(seg_path.read_bytes(), referenced[0], uids, study.volume.shape)
    except MedsegError as exc:
        raise _in_case(name, exc) from None
    truth, ignored = reference_labels(pixels, segments, manifest.labels, manifest.task.finding)
    if len(ignored) < len(segments):
        return study.volume, truth, ignored
    raise InputError(f"case {name}: no segment of the SEG matches a label of {manifest.ref} (segments "
                     f"{', '.join(f'{s.number} {s.label!r}' for s in segments[:4])}; labels "
                     f"{', '.join(repr(label.name) for label in manifest.labels)})", code="evaluate.seg_labels")


def _in_case(name: str, exc: MedsegError) -> InputError:
    """The study's or the SEG's own error under the case's name (a SEG's problems in evaluate's words)."""
    code = {"review.geometry": "evaluate.mask_grid", "review.unreadable": "evaluate.seg_unreadable"}.get(exc.code,
                                                                                                      exc.code)
    return InputError(f"case {name}: {exc.message}", code=code)


def _reference_seg(name: str, segs: list[tuple[Path, object]]) -> tuple[Path, object]:
    """The reference among a case's SEG instances (path, header): never a result medseg made; of the
    others the only one, or the only one not all AUTOMATIC."""
    candidates = [(path, header) for path, header in segs if not (
        str(header.get("Manufacturer", "")) == "medseg" and _automatic(header))]
    if not candidates:
        found = f"only {len(segs)} AI result SEG(s) of medseg" if segs else "DICOM files without a SEG"
        raise InputError(f"case {name}: {found}: the reference mask is missing", code="evaluate.case_incomplete")
    if len(candidates) == 1:
        return candidates[0]
    by_hand = [(path, header) for path, header in candidates if not _automatic(header)]
    if len(by_hand) != 1:
        raise InputError(f"case {name}: {len(candidates)} SEGs and {len(by_hand)} of them made by hand (not "
                         "AUTOMATIC): keep the one reference in the folder", code="evaluate.case_ambiguous")
    return by_hand[0]


def _automatic(header) -> bool:
    return all(str(item.get("SegmentAlgorithmType", "")) == "AUTOMATIC" for item in header.get("SegmentSequence", []))


def reference_labels(pixels: np.ndarray, segments, labels: tuple[LabelSpec, ...] | list[LabelSpec],
                     finding: str) -> tuple[np.ndarray, list[int]]:
    """A SEG's segments (``pixels`` (k, r, c, segments) bool, ``segments`` in that order) as a label
    array of the model's values, and the numbers of the segments no label took (module docstring)."""
    truth = np.zeros(pixels.shape[:3], np.int32)
    if finding != "structure" and len(labels) == 1:
        truth[pixels.any(axis=-1)] = labels[0].value
        return truth, []
    ignored = []
    for i, segment in enumerate(segments):
        label = _matching(segment, labels) or (labels[0] if len(labels) == len(segments) == 1 else None)
        if label is None:
            ignored.append(segment.number)
        else:
            truth[pixels[..., i]] = label.value
    return truth, ignored


def _matching(segment, labels) -> LabelSpec | None:
    named = [label for label in labels if label.name.casefold() == segment.label.strip().casefold()]
    coded = [label for label in labels if (label.type.value, label.type.scheme) == segment.type_code]
    return named[0] if len(named) == 1 else coded[0] if len(coded) == 1 else None


def _mean(values: list[float]) -> dict:
    estimate = mean_ci(values, REPORT_CONFIDENCE)
    return {"cases": len(values), "mean_dice": None if estimate.value is None else round(estimate.value, 4),
            "mean_dice_ci95": estimate.interval()}
