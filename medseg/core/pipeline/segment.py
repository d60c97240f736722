"""The segmentation pipeline as pure functions: preprocess -> infer -> postprocess.

``segment(volume, predictor, spec)`` does no I/O and takes any callable as
the model: the CLI, the training evaluation and (later) the
DICOM worker all call it. Geometry is exact end to end:

1. the volume is brought to canonical axes by permutations/flips only;
2. cropped to the body (bounding box of voxels above ``body_threshold_hu``);
3. resampled to the model spacing on a grid whose first and last voxel
   centres coincide with the crop's (``align_corners=True``), so the inverse
   resampling lands exactly on the source voxel centres;
4. windowed, run through sliding-window inference;
5. class probabilities are resampled back onto the cropped source grid,
   arg-maxed, small components dropped, pasted into the full grid and the
   axes restored. The mask therefore has the source's exact shape and affine.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from scipy import ndimage

from medseg.core.exceptions import ModelOutputError
from medseg.core.pipeline.flip_check import flip_check
from medseg.core.pipeline.spec import PipelineSpec
from medseg.core.volume import Reorientation, Volume, canonical_reorientation

Predictor = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Lesion:
    label: int
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    extent_mm: tuple[float, float, float]  # bounding box along x, y, z (patient axes)
    mean_probability: float
    #: mean binary entropy (bits) of the lesion's probability: 0 = certain, 1 = a coin flip
    mean_entropy: float = 0.0


@dataclass
class Preprocessed:
    tensor: torch.Tensor  # (1, 1, D, H, W) windowed to [0, 1], model grid
    reorientation: Reorientation
    crop: tuple[slice, slice, slice]  # in the canonical source grid
    canonical_shape: tuple[int, int, int]
    #: (1, 1, D, H, W) float 0/1 on the model grid, where ``spec.body_mask`` asks for one
    body: torch.Tensor | None = None


@dataclass
class SegmentationOutput:
    mask: Volume  # uint8 label values on the exact source grid
    lesions: list[Lesion]
    timings: dict[str, float] = field(default_factory=dict)


def target_shape(shape, spacing, target_spacing) -> tuple[int, int, int]:
    """Grid size along each axis keeping the end voxel centres in place."""
    return tuple(max(1, int(round((n - 1) * s / t))) + 1 for n, s, t in zip(shape, spacing, target_spacing))


def resample(tensor: torch.Tensor, shape) -> torch.Tensor:
    """Trilinear resampling of (N, C, D, H, W) with corner voxel centres aligned."""
    if tuple(tensor.shape[2:]) == tuple(shape):
        return tensor
    return F.interpolate(tensor, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=True)


def body_crop(array: np.ndarray, spacing, threshold: float, margin_mm: float) -> tuple[slice, slice, slice]:
    """Bounding box of the body (plus margin); the whole array if nothing is above threshold."""
    inside = array > threshold
    crop = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(inside.any(axis=other))
        if hits.size == 0:
            return tuple(slice(0, n) for n in array.shape)  # type: ignore[return-value]
        margin = int(np.ceil(margin_mm / spacing[axis]))
        crop.append(slice(max(0, hits[0] - margin), min(array.shape[axis], hits[-1] + 1 + margin)))
    return tuple(crop)  # type: ignore[return-value]


def preprocess(volume: Volume, spec: PipelineSpec) -> Preprocessed:
    reorientation = canonical_reorientation(volume.affine)
    canonical = reorientation.apply(volume.array)
    spacing = np.linalg.norm(reorientation.apply_affine(volume.affine, volume.shape)[:3, :3], axis=0)
    if spec.crop_body:
        crop = body_crop(canonical, spacing, spec.body_threshold_hu, spec.crop_margin_mm)
    else:
        crop = tuple(slice(0, n) for n in canonical.shape)
    region = np.ascontiguousarray(canonical[crop], dtype=np.float32)
    tensor = torch.from_numpy(region)[None, None]
    tensor = resample(tensor, target_shape(region.shape, spacing, spec.spacing_zyx))
    body = body_mask(tensor[0, 0].numpy(), spec.body_threshold_hu) if spec.body_mask else None
    lo, hi = spec.window_hu
    tensor = ((tensor.clamp(lo, hi) - lo) / (hi - lo)).contiguous()
    return Preprocessed(tensor, reorientation, crop, tuple(canonical.shape), body)  # type: ignore[arg-type]


def body_mask(hu: np.ndarray, threshold: float) -> torch.Tensor:
    """The patient: the largest 26-connected component above ``threshold`` HU (table, blankets and
    noise are smaller, or apart), its holes filled in each axial slice (axis 0 of the canonical
    grid): the lungs and bowel gas lie inside, and an airway open to the edge of the scan does
    not keep them out as a 3-D fill would. (1, 1, D, H, W) float 0/1; all ones if nothing is above."""
    above = hu > threshold
    components, count = ndimage.label(above, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return torch.ones((1, 1, *hu.shape))
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    body = components == int(sizes.argmax())
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return torch.from_numpy(body.astype(np.float32))[None, None]


def _inside(probabilities: torch.Tensor, body: torch.Tensor | None) -> torch.Tensor:
    """Foreground only inside ``body``; what it takes away goes to the background channel."""
    if body is None:
        return probabilities
    out = probabilities.clone()
    out[:, 1:] *= body
    out[:, 0] = 1 - out[:, 1:].sum(1)
    return out


def preprocess_mask(mask: Volume, prep: Preprocessed) -> torch.Tensor:
    """A label mask on the model grid of ``prep`` (for training and evaluation): (D, H, W) uint8."""
    region = np.ascontiguousarray(prep.reorientation.apply(mask.array)[prep.crop])
    shape = prep.tensor.shape[2:]
    values = [v for v in np.unique(region) if v != 0]
    out = torch.zeros(tuple(shape), dtype=torch.uint8)
    for value in values:  # per-label linear interpolation, then majority: no label bleeding
        channel = resample(torch.from_numpy((region == value).astype(np.float32))[None, None], shape)[0, 0]
        out[channel > 0.5] = int(value)
    return out


def infer(
    tensor: torch.Tensor, predictor: Predictor, spec: PipelineSpec, *, device: str = "cpu", amp: bool = False,
    body: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class probabilities (1, C, D, H, W), float32 on the CPU; foreground only inside ``body``
    (applied before the flip check, so that its budget goes to candidates inside the patient)."""
    autocast = torch.autocast(device_type="cuda", dtype=torch.float16) if amp and device.startswith("cuda") else nullcontext()

    def probe(x: torch.Tensor) -> torch.Tensor:
        logits = sliding_window_inference(
            x, roi_size=spec.roi_size, sw_batch_size=spec.sw_batch_size, predictor=predictor,
            overlap=spec.overlap, mode=spec.blend_mode,
        )
        return torch.softmax(logits.float(), dim=1)

    with torch.inference_mode(), autocast:
        x = tensor.to(device)
        mask = body.to(device) if body is not None else None
        probabilities = _inside(probe(x), mask)
        if spec.flip_check:
            probabilities = _inside(flip_check(x, probabilities, probe, spec.roi_size, spec.overlap,
                                               spec.flip_check_budget), mask)
    return probabilities.cpu()


def crop_labels(probabilities: torch.Tensor, prep: Preprocessed, spec: PipelineSpec) -> tuple[np.ndarray, np.ndarray]:
    """Unfiltered labels and the winning class's probability on the cropped canonical source grid."""
    crop_shape = tuple(s.stop - s.start for s in prep.crop)
    if probabilities.shape[1] == 2:  # binary: only the foreground channel needs resampling
        foreground = resample(probabilities[:, 1:2], crop_shape)[0, 0].numpy()
        return (foreground > spec.voxel_threshold).astype(np.uint8), foreground
    upsampled = resample(probabilities, crop_shape)[0]
    labels = upsampled.argmax(0).numpy().astype(np.uint8)
    return np.where(np.isin(labels, spec.labels), labels, 0).astype(np.uint8), upsampled.max(0).values.numpy()


def postprocess(
    probabilities: torch.Tensor, prep: Preprocessed, volume: Volume, spec: PipelineSpec
) -> tuple[np.ndarray, list[Lesion]]:
    """Labels on the exact source grid plus per-lesion measurements."""
    labels, confidence = crop_labels(probabilities, prep, spec)
    canonical_affine = prep.reorientation.apply_affine(volume.affine, volume.shape)
    offset = np.array([s.start for s in prep.crop], dtype=float)
    voxel_ml = abs(np.linalg.det(canonical_affine[:3, :3])) / 1000.0
    min_voxels = spec.min_lesion_ml / voxel_ml
    lesions = measure_components(labels, confidence, canonical_affine, spec.labels, offset=offset,
                                 min_voxels=min_voxels, min_peak=spec.min_peak_probability)

    full = np.zeros(prep.canonical_shape, np.uint8)
    full[prep.crop] = labels
    return np.ascontiguousarray(prep.reorientation.invert(full)), lesions


def measure_components(labels: np.ndarray, confidence: np.ndarray, affine: np.ndarray, values, *,
                       offset=(0.0, 0.0, 0.0), min_voxels: float = 0.0, min_peak: float = 0.0) -> list[Lesion]:
    """One :class:`Lesion` per 26-connected component of each label value, largest first.
    ``affine`` maps ``index + offset`` to patient LPS (mm); ``confidence`` is the winning class's
    probability per voxel. Components under ``min_voxels`` or whose peak stays under ``min_peak``
    are set to 0 in ``labels`` (in place) and not listed."""
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    linear = np.asarray(affine[:3, :3], dtype=float)
    offset = np.asarray(offset, dtype=float)
    lesions: list[Lesion] = []
    structure = np.ones((3, 3, 3), bool)
    for value in values:
        components, count = ndimage.label(labels == value, structure=structure)
        if count == 0:
            continue
        # per component, inside its bounding box only: whole-volume label statistics
        # (ndimage.sum_labels/maximum) sort the full array and cost seconds on a 512x512x200 study
        for i, box in enumerate(ndimage.find_objects(components), start=1):
            member = components[box] == i
            size = int(member.sum())
            inside = confidence[box][member]
            peak = float(inside.max())
            if size < min_voxels or peak < min_peak:
                labels[box][member] = 0
                continue
            start = np.array([b.start for b in box], dtype=float) + offset
            # the centroid is linear in the indices: the affine of the mean index (no per-voxel positions)
            centroid = linear @ (np.asarray(ndimage.center_of_mass(member)) + start) + affine[:3, 3]
            lesions.append(
                Lesion(
                    label=int(value),
                    volume_ml=round(size * voxel_ml, 3),
                    centroid_lps_mm=tuple(round(float(v), 2) for v in centroid),  # type: ignore[arg-type]
                    extent_mm=tuple(round(float(v), 1) for v in _spread(member, box, start, linear) + np.abs(linear).sum(1)),  # type: ignore[arg-type]
                    mean_probability=round(float(inside.mean()), 3),
                    mean_entropy=round(_binary_entropy(inside), 3),
                )
            )
    lesions.sort(key=lambda lesion: -lesion.volume_ml)
    return lesions


def _spread(member: np.ndarray, box, start: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Max minus min patient coordinate (mm) of the component's voxel centres along x, y, z. With an
    axis-aligned affine (one non-zero per row) it follows from the tight bounding box alone; an oblique
    one needs every voxel."""
    magnitude = np.abs(linear)
    if (np.count_nonzero(magnitude > 1e-9 * magnitude.max(), axis=1) == 1).all():
        return magnitude @ np.array([b.stop - b.start - 1 for b in box], dtype=float)
    return np.ptp((np.argwhere(member) + start) @ linear.T, axis=0)


#: binary entropy (bits) at the centres of 65536 equal bins of [0, 1]
_ENTROPY_BINS = 65535
_ENTROPY_TABLE = None


def _binary_entropy(p: np.ndarray) -> float:
    """Mean binary entropy in bits (of the winning class's probability for multi-label models).
    Through a 65536-bin histogram of ``p``: one pass with no float64 copy (a whole-organ component
    has tens of millions of voxels); the quantization moves the mean by < 2e-4 bits."""
    global _ENTROPY_TABLE
    if _ENTROPY_TABLE is None:
        q = np.clip(np.arange(_ENTROPY_BINS + 1) / _ENTROPY_BINS, 1e-7, 1 - 1e-7)
        _ENTROPY_TABLE = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    bins = (np.clip(p, 0.0, 1.0) * np.float32(_ENTROPY_BINS) + np.float32(0.5)).astype(np.uint16)
    counts = np.bincount(bins.ravel(), minlength=_ENTROPY_BINS + 1)
    return float(counts @ _ENTROPY_TABLE / max(int(counts.sum()), 1))


def segment(
    volume: Volume,
    predictor: Predictor,
    spec: PipelineSpec,
    *,
    device: str = "cpu",
    amp: bool = False,
    progress: Progress | None = None,
) -> SegmentationOutput:
    """Segment ``volume`` (HU) with ``predictor``; returns labels on the source grid."""
    report = progress or (lambda stage: None)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    report("preprocess")
    prep = preprocess(volume, spec)
    timings["preprocess_s"] = time.perf_counter() - t
    t = time.perf_counter()
    report("inference")
    probabilities = infer(prep.tensor, predictor, spec, device=device, amp=amp, body=prep.body)
    timings["inference_s"] = time.perf_counter() - t
    expected = (1, len(spec.labels) + 1, *prep.tensor.shape[2:])
    if tuple(probabilities.shape) != expected:
        raise ModelOutputError(
            f"model output shape {tuple(probabilities.shape)} breaks the contract {expected} "
            "(background + one channel per label, same grid as the input)",
            code="model.output_shape",
        )
    if not torch.isfinite(probabilities).all():
        raise ModelOutputError("model output contains NaN or Inf", code="model.nonfinite_output")
    t = time.perf_counter()
    report("postprocess")
    labels, lesions = postprocess(probabilities, prep, volume, spec)
    timings["postprocess_s"] = time.perf_counter() - t
    return SegmentationOutput(volume.with_array(labels), lesions, timings)
