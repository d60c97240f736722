"""Pipeline numerics with stub predictors: odd shapes, anisotropic spacing, all orientations."""

import itertools

import numpy as np
import pytest
import torch

from medseg.core.exceptions import ModelOutputError
from medseg.core.pipeline.segment import segment
from medseg.core.pipeline.spec import PipelineSpec
from medseg.core.volume import Volume, canonical_reorientation
from medseg.jobs.runner import segment_with_fallback
from tests.conftest import dice
from tests.test_volume import _affine


def threshold_predictor(x: torch.Tensor) -> torch.Tensor:
    """Pointwise 'model': foreground where the windowed intensity is above 0.5."""
    return torch.cat([0.5 - x, x - 0.5], dim=1) * 40


def _spec(volume: Volume, **kw) -> PipelineSpec:
    canonical = canonical_reorientation(volume.affine).apply_affine(volume.affine, volume.shape)
    spacing = tuple(float(s) for s in np.linalg.norm(canonical[:3, :3], axis=0))
    defaults = dict(spacing_zyx=spacing, window_hu=(0.0, 1.0), roi_size=(8, 16, 16), crop_body=False, min_lesion_ml=0)
    defaults.update(kw)
    return PipelineSpec(**defaults)


ORIENTATIONS = [(p, f) for p in itertools.permutations(range(3)) for f in [(False, False, False), (True, False, True)]]


@pytest.mark.parametrize("perm,flips", ORIENTATIONS)
def test_same_spacing_maps_back_voxel_for_voxel(perm, flips):
    rng = np.random.default_rng(1)
    array = rng.choice([0.1, 0.9], size=(13, 17, 19)).astype(np.float32)
    volume = Volume(array, _affine(perm, flips, spacing=(2.5, 0.7, 1.1)))
    out = segment(volume, threshold_predictor, _spec(volume))
    assert out.mask.shape == volume.shape
    assert np.allclose(out.mask.affine, volume.affine)
    assert np.array_equal(out.mask.array, (array > 0.5).astype(np.uint8))


def _sphere_volume(perm, flips, spacing, shape, center_index, radius_mm):
    affine = _affine(perm, flips, spacing=spacing)
    idx = np.indices(shape).reshape(3, -1).T
    lps = idx @ affine[:3, :3].T + affine[:3, 3]
    center = affine[:3, :3] @ center_index + affine[:3, 3]
    inside = (np.linalg.norm(lps - center, axis=1) <= radius_mm).reshape(shape)
    hu = np.where(inside, 60.0, -100.0).astype(np.float32)
    return Volume(hu, affine), inside, center


@pytest.mark.parametrize("perm,flips", ORIENTATIONS[::3])
def test_resampled_sphere_lands_on_the_source_grid(perm, flips):
    spacing, shape = (2.0, 0.75, 0.9), (31, 70, 61)
    volume, truth, center = _sphere_volume(perm, flips, spacing, shape, (15, 33, 30), 12.0)
    spec = PipelineSpec(spacing_zyx=(3.0, 1.5, 1.5), window_hu=(-100, 60), roi_size=(16, 32, 32), crop_body=False,
                        min_lesion_ml=0)
    out = segment(volume, threshold_predictor, spec)
    assert out.mask.shape == volume.shape
    assert dice(out.mask.array, truth) > 0.93
    assert len(out.lesions) == 1
    lesion = out.lesions[0]
    assert lesion.volume_ml == pytest.approx(4 / 3 * np.pi * 12.0**3 / 1000, rel=0.1)
    assert np.linalg.norm(np.array(lesion.centroid_lps_mm) - center) < 1.0
    assert all(20 < e < 28 for e in lesion.extent_mm)  # 24 mm sphere, coarsest axis 2 mm


def test_small_components_are_dropped_and_crop_does_not_change_result():
    shape, spacing = (20, 60, 60), (2.0, 1.0, 1.0)
    affine = _affine((2, 1, 0), (False, False, False), spacing=spacing)
    hu = np.full(shape, -1000.0, np.float32)
    hu[:, 5:55, 5:55] = -100.0  # "body"
    hu[5:15, 10:30, 10:30] = 60.0  # 10 x 20 x 20 voxels = 8 mL
    hu[10, 40:42, 40:42] = 60.0  # 4 voxels = 0.008 mL
    volume = Volume(hu, affine)
    kept = segment(volume, threshold_predictor, _spec(volume, window_hu=(-100, 60), min_lesion_ml=0.0))
    assert len(kept.lesions) == 2
    dropped = segment(volume, threshold_predictor, _spec(volume, window_hu=(-100, 60), min_lesion_ml=0.05))
    assert [l.volume_ml for l in dropped.lesions] == [pytest.approx(8.0)]
    assert dropped.mask.array[10, 40:42, 40:42].sum() == 0
    cropped = segment(volume, threshold_predictor, _spec(volume, window_hu=(-100, 60), min_lesion_ml=0.05, crop_body=True))
    assert np.array_equal(cropped.mask.array, dropped.mask.array)


def test_faint_components_are_dropped_by_peak_probability():
    shape, spacing = (20, 60, 60), (2.0, 1.0, 1.0)
    volume_hu = np.full(shape, -100.0, np.float32)
    volume_hu[5:15, 10:30, 10:30] = 60.0  # windowed 1.0: the stub is sure (p ~ 1)
    volume_hu[5:15, 35:50, 35:50] = -16.0  # windowed 0.525: foreground, but p = sigmoid(2) ~ 0.88
    volume = Volume(volume_hu, _affine((2, 1, 0), (False, False, False), spacing=spacing))
    every = segment(volume, threshold_predictor, _spec(volume, window_hu=(-100, 60)))
    assert len(every.lesions) == 2
    sure = segment(volume, threshold_predictor, _spec(volume, window_hu=(-100, 60), min_peak_probability=0.95))
    assert [l.volume_ml for l in sure.lesions] == [pytest.approx(8.0)]
    assert sure.mask.array[5:15, 35:50, 35:50].sum() == 0
    assert np.array_equal(sure.mask.array[5:15, 10:30, 10:30], every.mask.array[5:15, 10:30, 10:30])


def test_empty_result_is_a_normal_result():
    volume = Volume(np.full((10, 20, 20), -50.0, np.float32), np.eye(4))
    out = segment(volume, threshold_predictor, _spec(volume, window_hu=(0, 100)))
    assert out.lesions == [] and out.mask.array.sum() == 0


@pytest.mark.parametrize(
    "predictor,code",
    [
        (lambda x: torch.full((x.shape[0], 2, *x.shape[2:]), float("nan")), "model.nonfinite_output"),
        (lambda x: torch.zeros((x.shape[0], 3, *x.shape[2:])), "model.output_shape"),
    ],
)
def test_out_of_contract_model_output_is_refused(predictor, code):
    volume = Volume(np.zeros((10, 20, 20), np.float32), np.eye(4))
    with pytest.raises(ModelOutputError) as info:
        segment(volume, predictor, _spec(volume))
    assert info.value.code == code


def test_cuda_out_of_memory_retries_on_cpu_and_says_degraded():
    # No GPU on CI machines: the predictor raises the real torch.cuda.OutOfMemoryError on its
    # first call, as a CUDA run would, so the fallback path itself is what is exercised here.
    calls = {"n": 0, "moved": False}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return threshold_predictor(x)

    volume = Volume(np.random.default_rng(0).choice([0.1, 0.9], size=(9, 16, 16)).astype(np.float32), np.eye(4))
    outcome = segment_with_fallback(lambda on, amp: segment(volume, flaky, _spec(volume), device=on, amp=amp),
                                    device="cpu", amp=False, move_to_cpu=lambda: calls.update(moved=True))
    assert outcome.device == "cpu" and calls["moved"]
    assert "out of memory" in outcome.degraded_reason
    assert np.array_equal(outcome.output.mask.array, (volume.array > 0.5).astype(np.uint8))


@pytest.mark.parametrize("oblique", [False, True])
def test_segment_table_matches_per_voxel_positions(oblique):
    """Centroid and extent come from the mean index and the bounding box (fast); they equal the
    mean and spread of every voxel's patient position, for an axis-aligned and an oblique affine."""
    from scipy import ndimage

    from medseg.core.pipeline.segment import measure_components

    rng = np.random.default_rng(1)
    labels = (ndimage.gaussian_filter(rng.random((30, 40, 35)), 2) > 0.52).astype(np.uint8)
    affine = np.diag([2.5, -0.8, 0.8, 1.0])
    affine[:3, 3] = [10, -5, 3]
    if oblique:
        c, s = np.cos(0.3), np.sin(0.3)
        affine[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ affine[:3, :3]
    offset = np.array([3.0, 0.0, 5.0])
    table = measure_components(labels.copy(), np.full(labels.shape, 0.9, np.float32), affine, (1,), offset=offset)
    components, count = ndimage.label(labels == 1, structure=np.ones((3, 3, 3), bool))
    assert len(table) == count > 3
    expected = []
    for i in range(1, count + 1):
        lps = (np.argwhere(components == i) + offset) @ affine[:3, :3].T + affine[:3, 3]
        expected.append((tuple(np.round(lps.mean(0), 2)),
                         tuple(np.round(np.ptp(lps, axis=0) + np.abs(affine[:3, :3]).sum(1), 1))))
    got = [(lesion.centroid_lps_mm, lesion.extent_mm) for lesion in table]
    np.testing.assert_allclose(np.array(sorted(got), float).reshape(count, 6),
                               np.array(sorted(expected), float).reshape(count, 6), atol=0.011)
