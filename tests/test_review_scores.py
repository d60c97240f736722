"""Per-review metrics on shapes with known answers, and against an independent implementation
(DeepMind's surface-distance package) for Dice, HD95 and mean surface distance."""

from __future__ import annotations

import numpy as np
import pytest
import surface_distance as sd

from medseg.core.volume import Volume
from medseg.quality.scores import score_review


def vol(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Volume:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return Volume(array.astype(np.uint8), affine)


def ball(shape, center, radius_mm, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    d2 = sum(((grid[a] - center[a]) * spacing[a]) ** 2 for a in range(3))
    return d2 <= radius_mm ** 2


def box(shape, lo, hi) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def test_identical_masks_agree_perfectly():
    m = ball((30, 40, 40), (15, 20, 20), 6)
    s = score_review(vol(m), vol(m))
    assert s.dice == 1.0 and s.fn_rate == 0.0 and s.hd95_mm == 0.0 and s.msd_mm == 0.0
    assert s.fp_volume_ml == 0.0 and s.volume_diff_ml == 0.0
    assert (s.reference_lesions, s.detected_lesions, s.false_positive_lesions) == (1, 1, 0)


def test_both_empty_is_agreement_on_no_tumor():
    z = np.zeros((8, 16, 16), bool)
    s = score_review(vol(z), vol(z))
    assert s.dice == 1.0 and s.fn_rate is None and s.hd95_mm is None and s.lesion_sensitivity is None


def test_half_a_box_missed_known_answers():
    """Reference: a 10x10x10 box; prediction: its first 5 slices. Spacing 2 x 1 x 1 mm."""
    shape = (20, 20, 20)
    ref = box(shape, (5, 5, 5), (15, 15, 15))
    pred = box(shape, (5, 5, 5), (10, 15, 15))
    s = score_review(vol(pred, (2.0, 1.0, 1.0)), vol(ref, (2.0, 1.0, 1.0)))
    assert s.dice == pytest.approx(2 * 500 / 1500)
    assert s.fn_rate == pytest.approx(0.5)
    assert s.reference_volume_ml == pytest.approx(1000 * 2.0 / 1000)
    assert s.volume_diff_ml == pytest.approx(-500 * 2.0 / 1000)
    assert s.fp_volume_ml == 0.0
    assert s.detected_lesions == 1  # 50 % covered >= 10 %


def test_missed_and_false_positive_lesions_with_location():
    shape = (30, 60, 60)
    spacing = (2.0, 0.8, 0.8)
    big = ball(shape, (15, 15, 15), 8, spacing)  # 16 mm: a lesion >= 10 mm
    small = ball(shape, (15, 45, 45), 3, spacing)  # 6 mm
    stray = ball(shape, (5, 45, 10), 2, spacing)
    ref = big | small
    pred = big | stray
    s = score_review(vol(pred, spacing, origin=(-100, 50, 20)), vol(ref, spacing, origin=(-100, 50, 20)))
    assert (s.reference_lesions, s.detected_lesions) == (2, 1)
    assert (s.reference_lesions_ge10, s.detected_lesions_ge10) == (1, 1)
    assert s.false_positive_lesions == 1 and s.lesion_sensitivity == 0.5
    assert len(s.missed) == 1
    missed = s.missed[0]
    assert 5.0 <= missed.diameter_mm <= 7.5
    # centroid in patient coordinates: origin + index * spacing (axis-aligned affine)
    np.testing.assert_allclose(missed.centroid_lps_mm, (-100 + 15 * 2.0, 50 + 45 * 0.8, 20 + 45 * 0.8), atol=0.5)


def test_a_touching_voxel_is_not_a_detection():
    shape = (20, 20, 20)
    ref = box(shape, (5, 5, 5), (15, 15, 15))
    pred = np.zeros(shape, bool)
    pred[5, 5, 5:8] = True  # 3 of 1000 voxels: < 10 % overlap
    s = score_review(vol(pred), vol(ref))
    assert s.detected_lesions == 0 and s.false_positive_lesions == 0 and len(s.missed) == 1


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.7, 0.7), (1.25, 0.9, 1.1)])
def test_against_surface_distance_package(spacing):
    # one tumor, contoured smaller and shifted: surface distances of 0-4 mm. (Isolated specks or a
    # distant missed lesion weigh differently under the two surface definitions, see below.)
    shape = (40, 64, 64)
    ref = ball(shape, (20, 30, 30), 12, spacing) & ~ball(shape, (20, 18, 30), 5, spacing)
    pred = ball(shape, (21, 31, 29), 10, spacing)
    ours = score_review(vol(pred, spacing), vol(ref, spacing))
    distances = sd.compute_surface_distances(ref, pred, spacing)
    assert ours.dice == pytest.approx(sd.compute_dice_coefficient(ref, pred), abs=1e-6)  # MONAI computes in float32
    # surface definitions differ (MONAI: boundary voxels; DeepMind: surfels weighted by area), so the
    # two agree within a voxel, not exactly
    voxel = max(spacing)
    assert ours.hd95_mm == pytest.approx(sd.compute_robust_hausdorff(distances, 95), abs=voxel)
    gt_to_pred, pred_to_gt = sd.compute_average_surface_distance(distances)
    assert ours.msd_mm == pytest.approx((gt_to_pred + pred_to_gt) / 2, abs=voxel / 2)


def test_concentric_spheres_surface_distance_is_the_radius_gap():
    shape = (60, 60, 60)
    ref = ball(shape, (30, 30, 30), 20)
    pred = ball(shape, (30, 30, 30), 14)
    s = score_review(vol(pred), vol(ref))
    assert s.hd95_mm == pytest.approx(6.0, abs=1.0)
    assert s.msd_mm == pytest.approx(6.0, abs=1.0)
    assert s.fn_rate == pytest.approx(1 - (14 / 20) ** 3, abs=0.02)


def test_crop_does_not_change_the_numbers():
    """Masks at the volume's edge and far apart: the union crop must not clip anything."""
    shape = (30, 50, 50)
    ref = box(shape, (0, 0, 0), (6, 8, 8)) | box(shape, (24, 42, 42), (30, 50, 50))
    pred = box(shape, (0, 0, 1), (6, 8, 9))
    s = score_review(vol(pred), vol(ref))
    distances = sd.compute_surface_distances(ref, pred, (1.0, 1.0, 1.0))
    assert s.dice == pytest.approx(sd.compute_dice_coefficient(ref, pred))
    assert s.hd95_mm == pytest.approx(sd.compute_robust_hausdorff(distances, 95), abs=1.0)


def test_grid_mismatch_is_refused():
    m = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="same grid"):
        score_review(vol(m), vol(m, spacing=(2.0, 1.0, 1.0)))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.6, 0.9)])
def test_surface_numbers_equal_monais_metric_functions(spacing):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    shape = (30, 50, 50)
    ref = ball(shape, (15, 25, 25), 9, spacing) | ball(shape, (5, 8, 40), 3, spacing)
    pred = ball(shape, (16, 24, 25), 8, spacing) | ball(shape, (25, 40, 8), 2, spacing)
    ours = score_review(vol(pred, spacing), vol(ref, spacing))
    p, r = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing)).item()
    msd = compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=list(spacing)).item()
    assert ours.hd95_mm == pytest.approx(hd95, rel=1e-5) and ours.msd_mm == pytest.approx(msd, rel=1e-5)
