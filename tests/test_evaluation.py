"""The quality definitions of medseg/core/scoring.py on hand-made masks (numbers worked out by hand)."""

import shutil

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


def _dicom_case(folder, references: int = 1, ai_result: bool = False, phantom=None):
    """A site's DICOM case: a phantom series and ``references`` hand-made SEGs of its tumors
    (plus an AI result SEG beside them, as a PACS export holds both)."""
    from medseg.core.labels import LabelSpec
    from medseg.core.seg import write_seg
    from tests.conftest import small_phantom, write_study

    phantom = phantom or small_phantom()
    datasets = write_study(folder / "series", phantom)
    tumor = LabelSpec.model_validate({"value": 1, "name": "Tumor", "category": {"value": "49755003", "scheme": "SCT",
                                      "meaning": "Morphologically Abnormal Structure"},
                                      "type": {"value": "108369006", "scheme": "SCT", "meaning": "Neoplasm"}})
    mask = (phantom.truth.array > 0).astype(np.uint8)
    for i in range(references):
        write_seg(folder / f"reference{i}.dcm", mask, datasets, [tumor], model_name="reader", model_version="1",
                  ground_truth=True)
    if ai_result:
        write_seg(folder / "ai.dcm", np.zeros_like(mask), datasets, [tumor], model_name="m", model_version="1")
    return phantom


def test_a_dicom_case_is_its_series_and_the_seg_made_by_hand(tmp_path, shipped_model):
    """The reference of a DICOM case is the SEG not made AUTOMATIC, on the series it references;
    a second hand-made SEG, or none, is refused with the case's name."""
    from medseg.core.exceptions import InputError
    from medseg.models.manifest import ModelManifest
    from medseg.quality.acceptance import dicom_case, find_cases

    manifest = ModelManifest.load(shipped_model)
    phantom = _dicom_case(tmp_path / "cases" / "DOE_JOHN", ai_result=True)
    assert [(n, m) for n, _, m in find_cases(tmp_path / "cases")] == [("DOE_JOHN", None)]
    volume, truth, ignored = dicom_case("DOE_JOHN", tmp_path / "cases" / "DOE_JOHN", manifest)
    assert ignored == [] and np.array_equal(truth, phantom.truth.array > 0)  # the reference, not the empty AI SEG
    assert np.abs(volume.array - phantom.image.array).max() <= 1.0

    _dicom_case(tmp_path / "two", references=2)
    with pytest.raises(InputError) as two:
        dicom_case("DOE_JANE", tmp_path / "two", manifest)
    assert two.value.code == "evaluate.case_ambiguous" and two.value.message.startswith("case DOE_JANE: 2 SEGs")
    (tmp_path / "none").mkdir()
    shutil.copytree(tmp_path / "two" / "series", tmp_path / "none" / "series")
    with pytest.raises(InputError) as none:
        dicom_case("DOE_JIM", tmp_path / "none", manifest)
    assert none.value.code == "evaluate.case_incomplete" and "without a SEG" in none.value.message
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not DICOM")
    with pytest.raises(InputError) as text:
        dicom_case("DOE_JOE", tmp_path / "text", manifest)
    assert text.value.code == "input.no_dicom" and text.value.message.startswith("case DOE_JOE: ")


def test_a_sites_segments_become_the_models_labels_by_name_or_code():
    """A lesion model takes every segment as the lesion; any other model a segment of its label's
    name, else of its label's coded type; a segment matching none is left out and named."""
    from medseg.core.labels import LabelSpec
    from medseg.quality.acceptance import reference_labels
    from medseg.quality.masks import Segment

    def label(value, name, code):
        return LabelSpec.model_validate({"value": value, "name": name,
                                         "category": {"value": "123037004", "scheme": "SCT", "meaning": "Anatomical Structure"},
                                         "type": {"value": code, "scheme": "SCT", "meaning": name}})

    liver, spleen = label(1, "Liver", "10200004"), label(2, "Spleen", "78961009")
    pixels = np.zeros((2, 3, 3, 3), bool)
    pixels[0, 0, 0, 0] = pixels[0, 1, 1, 1] = pixels[1, 2, 2, 2] = True
    segments = [Segment(1, "SPLEEN ", ("0", "99X")), Segment(2, "Leber", ("10200004", "SCT")),
                Segment(3, "Kidney", ("64033007", "SCT"))]
    truth, ignored = reference_labels(pixels, segments, [liver, spleen], "structure")
    assert truth[0, 0, 0] == 2 and truth[0, 1, 1] == 1 and truth[1, 2, 2] == 0 and ignored == [3]
    lesions, none = reference_labels(pixels, segments, [label(1, "Tumor", "108369006")], "lesion")
    assert none == [] and lesions.sum() == 3  # every segment is tumor
    single, _ = reference_labels(pixels[..., :1], [Segment(1, "Milz", ("0", "99X"))], [spleen], "structure")
    assert single[0, 0, 0] == 2  # one segment, one label: that label, whatever its name
