"""The whole-CT training data (medseg.training.real_ct) on a stand-in of the LIDC case's layout: a
synthetic 275-slice CT (the real one is 76 MB, kept out of the repository) with a nodule where the
real one is (slices 151-168)."""

import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.core.pipeline.spec import PipelineSpec
from medseg.training.real_ct import (
    FULL_FOV_CASE,
    MEASURE_SLICES,
    TRAIN_SLICES,
    VALIDATION_SLICES,
    NegativeVolume,
    full_fov,
    slab,
)

SPEC = PipelineSpec(spacing_zyx=(3.0, 3.0, 3.0), window_hu=(-200.0, 300.0), roi_size=(16, 16, 16))


def _stand_in(root, nodule_slices=(151, 169)):
    folder = root / FULL_FOV_CASE
    folder.mkdir(parents=True)
    hu = np.full((40, 40, 275), -1000, np.int16)  # NIfTI (x, y, z)
    rr, cc = np.mgrid[0:40, 0:40]
    hu[((rr - 20) / 15.0) ** 2 + ((cc - 20) / 15.0) ** 2 <= 1, :] = 40
    readers = np.zeros(hu.shape, np.uint8)
    readers[18:23, 18:23, nodule_slices[0]:nodule_slices[1]] = 3
    affine = np.diag([-2.0, -2.0, 1.0, 1.0])
    for name, data in (("CT_image.nii.gz", hu), ("nodule_readers.nii.gz", readers)):
        image = nib.Nifti1Image(data, affine)
        image.set_sform(affine, 1)
        image.set_qform(affine, 1)
        nib.save(image, str(folder / name))
    return root


def test_the_slabs_split_the_ct_where_the_geometry_says(tmp_path):
    root = _stand_in(tmp_path)
    train, train_truth = full_fov(root, "train")
    measure, measure_truth = full_fov(root, "measure")
    assert train.shape[0] == TRAIN_SLICES[1] - TRAIN_SLICES[0] and measure.shape[0] == MEASURE_SLICES[1] - MEASURE_SLICES[0]
    assert not train_truth.array.any() and measure_truth.array.sum() == 5 * 5 * 18
    validation, validation_truth = full_fov(root, "validation")
    assert TRAIN_SLICES[1] == MEASURE_SLICES[0] and MEASURE_SLICES[1] == VALIDATION_SLICES[0] == 275 - validation.shape[0]
    assert not validation_truth.array.any()
    # slice k of the measuring slab lies where slice 120 + k of the whole CT lies
    from medseg.core.io.nifti import read_nifti
    whole = read_nifti(root / FULL_FOV_CASE / "CT_image.nii.gz")
    np.testing.assert_allclose(measure.affine[:3, 3], whole.affine[:3, :3] @ [120, 0, 0] + whole.affine[:3, 3])
    np.testing.assert_array_equal(slab(whole, (10, 12)).array, whole.array[10:12])


def test_a_training_or_validation_slab_holding_the_nodule_is_refused(tmp_path):
    with pytest.raises(ValueError, match="training slab of the whole CT must not hold the nodule"):
        full_fov(_stand_in(tmp_path / "a", nodule_slices=(100, 110)), "train")
    with pytest.raises(ValueError, match="validation slab of the whole CT must not hold the nodule"):
        full_fov(_stand_in(tmp_path / "b", nodule_slices=(230, 240)), "validation")


def test_negatives_are_centred_inside_the_body_and_mined_where_the_network_calls_tumor(tmp_path):
    image, _ = full_fov(_stand_in(tmp_path), "train")
    negatives = NegativeVolume.from_volume(image, SPEC)
    assert len(negatives.body_voxels) and len(negatives.hard) == 0
    rng = np.random.default_rng(0)
    for _ in range(50):  # in or at the edge of the patient (air is 0 after the window), never in the air
        z, y, x = negatives.centre(rng, hard_share=0.5)
        assert negatives.image[z, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].max() > 0
    air = negatives.image == 0
    assert air.any() and not air[tuple(negatives.body_voxels.T)].all()

    class Everywhere(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros((x.shape[0], 2, *x.shape[2:]))
            logits[:, 1] = 5.0
            return logits

    called = negatives.mine(Everywhere(), SPEC, limit=50, rng=rng)
    assert called == len(negatives.body_voxels) and len(negatives.hard) == 50
    inside = {tuple(v) for v in negatives.body_voxels.tolist()}
    assert all(tuple(v) in inside for v in negatives.hard.tolist())
    assert all(tuple(negatives.centre(rng, hard_share=1.0)) in {tuple(v) for v in negatives.hard.tolist()}
               for _ in range(10))

    class Nowhere(torch.nn.Module):
        def forward(self, x):
            return torch.zeros((x.shape[0], 2, *x.shape[2:]))

    # a mining that finds nothing keeps the earlier hard negatives instead of emptying the pool
    before = negatives.hard.copy()
    assert negatives.mine(Nowhere(), SPEC, limit=50, rng=rng) == 0
    np.testing.assert_array_equal(negatives.hard, before)

    # new finds come first, then the earlier ones, the oldest dropped past the limit
    bright = negatives.body_voxels[rng.choice(len(negatives.body_voxels), 10, replace=False)]
    negatives.image[tuple(bright.T)] = 0.99  # the cylinder is 0.48 after the window

    class Brightest(torch.nn.Module):  # calls tumor on the 10 bright voxels only
        def forward(self, x):
            logits = torch.zeros((x.shape[0], 2, *x.shape[2:]))
            logits[:, 1] = torch.where(x[:, 0] > 0.9, 5.0, -5.0)
            return logits

    found = negatives.mine(Brightest(), SPEC, limit=55, rng=rng)
    assert found == 10 and len(negatives.hard) == 55
    assert {tuple(v) for v in negatives.hard[:10].tolist()} == {tuple(v) for v in bright.tolist()}
    np.testing.assert_array_equal(negatives.hard[found:], before[:55 - found])


class _Bright(torch.nn.Module):
    """Calls tumor by brightness: p(tumor) = sigmoid(40 (x - 0.6)) on the windowed image (a 280 HU
    tumor -> 1.0, soft tissue at 40 HU -> 0.008); flip-invariant, so the flip check agrees."""

    def forward(self, x):
        logits = torch.zeros((x.shape[0], 2, *x.shape[2:]))
        logits[:, 1] = 40 * (x[:, 0] - 0.6)
        return logits


def _volume(blobs):
    """A 30 x 40 x 40 soft-tissue block at 3 mm, with cubic blobs (z, y, x, side, HU); and their mask."""
    from medseg.core.volume import Volume
    hu = np.full((30, 40, 40), -1000, np.int16)
    hu[2:28, 4:36, 4:36] = 40
    truth = np.zeros(hu.shape, np.uint8)
    for z, y, x, side, value, is_tumor in blobs:
        hu[z:z + side, y:y + side, x:x + side] = value
        truth[z:z + side, y:y + side, x:x + side] = is_tumor
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    return Volume(hu, affine), Volume(truth, affine)


@pytest.mark.parametrize("false_positive_hu, expected", [
    # a faint false positive (peak 0.85): a peak threshold of 0.9 silences it, the lowest size stays
    (122, {"min_lesion_ml": 0.05, "min_peak_probability": 0.9, "whole_ct_false_positives": 0}),
    # a confident one (peak 1.0) but small (8 voxels, 0.216 mL): only the size filter silences it
    (300, {"min_lesion_ml": 0.5, "min_peak_probability": 0.5, "whole_ct_false_positives": 0}),
])
def test_real_ct_calibration_keeps_the_best_validation_dice_within_the_whole_ct_false_positive_budget(
        false_positive_hu, expected):
    from medseg.training.calibration import calibrate_on_real_ct

    spec = dataclasses.replace(SPEC, roi_size=(16, 32, 32))
    cases = [("STS_A", *_volume([(10, 10, 10, 8, 280, 1)])), ("STS_B", *_volume([(12, 14, 12, 6, 280, 1)]))]
    whole_ct = _volume([(14, 20, 20, 2, false_positive_hu, 0)])
    result = calibrate_on_real_ct(_Bright(), spec, cases, whole_ct)
    assert {k: result["chosen"][k] for k in expected} == expected
    assert result["within_budget"] and result["validation_cases"] == ["STS_A", "STS_B"]
    assert min(result["per_case_dice"].values()) > 0.9
    # the sweep shows what the budget cost: the unfiltered pair calls the false positive
    assert result["sweep"]["voxel_threshold=0.5 min_lesion_ml=0.05 min_peak_probability=0.5"]["whole_ct_false_positives"] == 1


def test_real_ct_calibration_says_when_no_filter_pair_is_quiet_enough():
    from medseg.training.calibration import calibrate_on_real_ct

    spec = dataclasses.replace(SPEC, roi_size=(16, 32, 32))
    cases = [("STS_A", *_volume([(10, 10, 10, 8, 280, 1)]))]
    whole_ct = _volume([(8, 8, 8, 9, 300, 0)])  # a confident 20 mL false positive: bigger than any size filter
    result = calibrate_on_real_ct(_Bright(), spec, cases, whole_ct)
    assert not result["within_budget"] and result["chosen"]["whole_ct_false_positives"] == 1
    assert result["chosen"]["min_lesion_ml"] == 0.05 and result["chosen"]["min_peak_probability"] == 0.5


def test_real_ct_calibration_lowers_the_voxel_threshold_when_the_tumor_rim_is_uncertain():
    """A tumor whose rim the network calls at p = 0.35: the argmax loses the rim, hysteresis (voxel
    threshold 0.3 around a core above 0.5) keeps it; equal Dice would keep the plain 0.5."""
    from medseg.training.calibration import calibrate_on_real_ct

    spec = dataclasses.replace(SPEC, roi_size=(16, 32, 32))
    rim = _volume([(8, 8, 8, 12, 92, 1)])  # 92 HU: p(tumor) = 0.35
    core_hu = rim[0].array.copy()
    core_hu[11:17, 11:17, 11:17] = 280  # the sure core
    cases = [("STS_A", rim[0].with_array(core_hu), rim[1])]
    result = calibrate_on_real_ct(_Bright(), spec, cases, _volume([]))
    assert result["chosen"]["voxel_threshold"] == 0.3 and result["per_case_dice"]["STS_A"] > 0.95
    plain = result["sweep"]["voxel_threshold=0.5 min_lesion_ml=0.05 min_peak_probability=0.5"]["mean_dice"]
    assert plain < 0.3  # the core alone: 216 of 1728 voxels
    even = calibrate_on_real_ct(_Bright(), spec, [("STS_B", *_volume([(8, 8, 8, 8, 280, 1)]))], _volume([]))
    assert even["chosen"]["voxel_threshold"] == 0.5
