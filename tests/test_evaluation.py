"""The quality definitions of medseg/core/scoring.py on hand-made masks (numbers worked out by hand)."""

import numpy as np
import pytest

from medseg.core.scoring import evaluate_case, summarize


def _cube(shape, lo, size):
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(a, a + size) for a in lo)] = 1
    return mask


def test_detection_false_positives_and_lesion_size():
    shape = (40, 40, 40)
    reference = _cube(shape, (2, 2, 2), 10) | _cube(shape, (25, 25, 25), 4)  # 1000 + 64 voxels
    prediction = _cube(shape, (2, 2, 2), 10) | _cube(shape, (30, 2, 30), 3)  # hit + a 27-voxel FP
    case = evaluate_case(prediction, reference, voxel_ml=0.001)  # 1 mm^3 voxels
    assert case.dice == pytest.approx(2 * 1000 / (1027 + 1064))
    (big, big_hit), (small, small_hit) = sorted(case.reference_lesions, reverse=True)
    assert big == pytest.approx((6 * 1000 / np.pi) ** (1 / 3)) and big_hit
    assert small == pytest.approx((6 * 64 / np.pi) ** (1 / 3)) and not small_hit
    assert case.false_positive_lesions == 1


def test_a_lesion_needs_ten_percent_overlap_to_count_as_detected():
    shape = (30, 30, 30)
    reference = _cube(shape, (0, 0, 0), 10)  # 1000 voxels
    barely = np.zeros(shape, np.uint8)
    barely[0, :10, :10] = 1  # 100 voxels = 10 %
    assert evaluate_case(barely, reference, 0.001).reference_lesions[0][1]
    barely[0, 0, :] = 0  # 90 voxels
    assert not evaluate_case(barely, reference, 0.001).reference_lesions[0][1]


def test_summary_separates_empty_studies_and_pools_global_dice():
    shape = (20, 20, 20)
    tumor = _cube(shape, (0, 0, 0), 10)
    perfect = evaluate_case(tumor, tumor, 0.001)
    missed = evaluate_case(np.zeros(shape, np.uint8), _cube(shape, (0, 0, 0), 2), 0.001)  # 8 voxels missed
    clean = evaluate_case(np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), 0.001)
    noisy = evaluate_case(_cube(shape, (15, 15, 15), 2), np.zeros(shape, np.uint8), 0.001)
    summary = summarize([perfect, missed, clean, noisy])
    assert summary["studies_with_tumor"] == 2
    assert summary["mean_dice"] == 0.5  # empty studies do not enter the mean
    assert summary["global_dice"] == pytest.approx(round(2 * 1000 / (2000 + 8 + 8), 4))
    assert summary["empty_studies_correct"] == "1/2"
    assert summary["false_positive_lesions_per_study"] == 0.25
    assert summary["lesion_sensitivity_ge_10mm"] == 1.0  # the 10-voxel cube is 12.4 mm; the 2-voxel one is not counted
    assert summary["lesion_sensitivity_all"] == 0.5
    # Dice 1.0 and 0.0: t(1) = 12.71, half-width 12.71 * 0.707 / sqrt(2) = 6.35, clipped to the range
    assert summary["mean_dice_ci95"] == [0.0, 1.0]
    # 1 of 2 lesions, Wilson 95 % (z = 1.96, n = 2, p = 0.5): centre (p + z^2/2n) / (1 + z^2/n) = 0.5,
    # half-width z * sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) = 0.4055
    assert summary["lesion_sensitivity_all_ci95"] == [0.0945, 0.9055]
    one = summarize([perfect])
    assert one["mean_dice"] == 1.0 and one["mean_dice_ci95"] is None  # one study gives no interval


def test_site_cases_are_found_by_their_file_names_and_a_half_case_is_refused(tmp_path):
    from medseg.core.exceptions import InputError
    from medseg.quality.acceptance import find_cases

    with pytest.raises(InputError) as empty:
        find_cases(tmp_path)
    assert empty.value.code == "evaluate.no_cases"
    for name, files in (("b", ("CT_image.nii.gz", "CT_mask.nii.gz")), ("a", ("image.nii.gz", "label.nii.gz")),
                        ("notes", ())):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_bytes(b"")
    assert [(n, i.name, m.name) for n, i, m in find_cases(tmp_path)] == [
        ("a", "image.nii.gz", "label.nii.gz"), ("b", "CT_image.nii.gz", "CT_mask.nii.gz")]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "image.nii.gz").write_bytes(b"")
    with pytest.raises(InputError) as half:
        find_cases(tmp_path)
    assert half.value.code == "evaluate.case_incomplete" and "c hold an image without a mask" in half.value.message
