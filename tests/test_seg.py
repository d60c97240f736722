"""DICOM-SEG output: viewer-correct geometry, exact round trip, independent readers and validators."""

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg.core.exceptions import SegGeometryError
from medseg.core.io.nifti import read_nifti
from medseg.core.seg import build_seg, read_seg_mask, verify_seg_geometry, write_seg
from medseg.training.config import TUMOR_LABEL
from medseg.training.ct_writer import ct_datasets
from tests.conftest import PHI_ID, PHI_NAME, small_phantom

ORIENTATIONS = ["supine", "prone", "feet_first", "coronal", "sagittal"]


def _case(orientation, n_tumors=3):
    phantom = small_phantom(seed=21, shape=(20, 56, 48), spacing=(3.5, 1.9, 2.3), orientation=orientation,
                            n_tumors=n_tumors)
    datasets = ct_datasets(phantom.image, patient_name=PHI_NAME, patient_id=PHI_ID)
    return phantom, datasets


def _write(tmp_path, mask, datasets):
    path = tmp_path / "seg.dcm"
    info = write_seg(path, mask, datasets, [TUMOR_LABEL], model_name="ct-phantom", model_version="1.0.0")
    return path, info


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_round_trip_is_voxel_exact_and_frames_lie_in_source_planes(tmp_path, orientation):
    phantom, datasets = _case(orientation)
    mask = phantom.truth.array
    assert mask.any()
    path, info = _write(tmp_path, mask, datasets)
    assert info.frames == len(datasets) and not info.empty

    back = read_seg_mask(path, [ds.SOPInstanceUID for ds in datasets])
    assert np.array_equal(back, mask)

    seg = pydicom.dcmread(path)
    verify_seg_geometry(seg, datasets)  # the same post-condition, on the file read back
    iop = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert np.allclose(np.array(iop, float), np.array(datasets[0].ImageOrientationPatient, float))
    by_uid = {ds.SOPInstanceUID: ds for ds in datasets}
    framed = []
    for frame in seg.PerFrameFunctionalGroupsSequence:  # highdicom may order frames by position
        ds = by_uid[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        framed.append(ds.SOPInstanceUID)
        assert np.allclose(np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float),
                           np.array(ds.ImagePositionPatient, float))
    assert sorted(framed) == sorted(by_uid)  # one frame per source slice
    assert (seg.Rows, seg.Columns) == (datasets[0].Rows, datasets[0].Columns)


def test_seg_says_what_made_it_and_that_it_needs_review(tmp_path):
    phantom, datasets = _case("supine")
    path, _ = _write(tmp_path, phantom.truth.array, datasets)
    seg = pydicom.dcmread(path)
    assert seg.SegmentationType == "BINARY"
    assert "NOT REVIEWED" in seg.SeriesDescription and "ct-phantom 1.0.0" in seg.SeriesDescription
    assert "AI-generated" in seg.ContentDescription
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName == "ct-phantom"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("ct-phantom", "1.0.0")
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert len(segment.RecommendedDisplayCIELabValue) == 3
    assert seg.StudyInstanceUID == datasets[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in datasets}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID


def test_no_lesion_is_a_valid_seg_that_says_so(tmp_path):
    _, datasets = _case("supine", n_tumors=0)
    path, info = _write(tmp_path, np.zeros((20, 56, 48), np.uint8), datasets)
    seg = pydicom.dcmread(path)
    assert info.empty and info.frames == 20
    assert "no lesion" in seg.SeriesDescription and "No lesion detected" in seg.ContentDescription
    assert len(seg.SegmentSequence) == 1
    assert read_seg_mask(path, [ds.SOPInstanceUID for ds in datasets]).sum() == 0
    assert _dciodvfy_errors(path) == []


def test_mask_in_ras_order_would_make_perpendicular_frames_and_is_refused():
    """The classic bug: a mask handed over as (x, y, z) becomes sagittal frames of an axial study."""
    # a cube, so rows/columns match either way and only the plane orientation gives it away
    phantom = small_phantom(seed=21, shape=(32, 32, 32), spacing=(3.0, 2.0, 2.0), n_tumors=3)
    datasets = ct_datasets(phantom.image, patient_name=PHI_NAME, patient_id=PHI_ID)
    a = phantom.image.affine
    ras_ordered = hd.Volume(
        array=np.ascontiguousarray(np.transpose(phantom.truth.array, (2, 1, 0))),
        affine=a[:, [2, 1, 0, 3]],
        coordinate_system="PATIENT",
        frame_of_reference_uid=datasets[0].FrameOfReferenceUID,
    )
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=ras_ordered, segmentation_type="BINARY",
        segment_descriptions=_descriptions(),
        series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="x", manufacturer_model_name="x", software_versions="1", device_serial_number="1",
        omit_empty_frames=False,
    )
    with pytest.raises(SegGeometryError, match="not in the plane"):
        verify_seg_geometry(seg, datasets)
    with pytest.raises(ValueError, match="does not match the source series"):
        build_seg(np.transpose(phantom.truth.array, (2, 1, 0))[:, :, :31], datasets, [TUMOR_LABEL],
                  model_name="m", model_version="1.0.0")


def _descriptions():
    from pydicom.sr.codedict import codes

    return [hd.seg.SegmentDescription(
        segment_number=1, segment_label="Tumor", segmented_property_category=TUMOR_LABEL.category.to_code(),
        segmented_property_type=TUMOR_LABEL.type.to_code(), algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="m", version="1", family=codes.cid7162.ArtificialIntelligence),
    )]


def _dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("orientation", ["supine", "coronal"])
def test_dciodvfy_reports_no_errors(tmp_path, orientation):
    phantom, datasets = _case(orientation)
    path, _ = _write(tmp_path, phantom.truth.array, datasets)
    assert _dciodvfy_errors(path) == []


@pytest.mark.parametrize("orientation", ["supine", "prone", "sagittal"])
def test_dcmqi_reads_back_the_same_mask(tmp_path, orientation):
    """Independent reader: dcmqi's segimage2itkimage, resampled by geometry onto our grid (exact lookup)."""
    phantom, datasets = _case(orientation)
    path, _ = _write(tmp_path, phantom.truth.array, datasets)
    tool = shutil.which("segimage2itkimage") or str(Path(pydicom.__file__).parents[4] / "bin" / "segimage2itkimage")
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([tool, "--inputDICOM", str(path), "--outputDirectory", str(out), "--outputType", "nifti"],
                   check=True, capture_output=True)
    other = read_nifti(out / "1.nii.gz")
    # map every voxel of our grid into dcmqi's grid by patient coordinates
    index = np.indices(phantom.truth.shape).reshape(3, -1)
    lps = phantom.truth.affine[:3, :3] @ index + phantom.truth.affine[:3, 3:4]
    theirs = np.linalg.solve(other.affine[:3, :3], lps - other.affine[:3, 3:4])
    assert np.allclose(theirs, np.round(theirs), atol=1e-2), "dcmqi grid is not our grid"
    theirs = np.round(theirs).astype(int)
    inside = np.all((theirs >= 0) & (theirs < np.array(other.shape)[:, None]), axis=0)
    values = np.zeros(index.shape[1], np.uint8)
    values[inside] = other.array[tuple(theirs[:, inside])]
    assert np.array_equal(values.reshape(phantom.truth.shape), phantom.truth.array)


def test_a_doubtful_patient_name_is_never_quoted_in_a_warning(tmp_path):
    """highdicom warns about a one-component PatientName by quoting it; medseg drops that warning
    (the name is copied into the SEG unchanged), so no patient data reaches the console or log."""
    import warnings

    from medseg.core.seg import write_seg
    from medseg.training.config import TUMOR_LABEL
    from tests.conftest import small_phantom, write_study

    p = small_phantom(seed=3, shape=(8, 32, 32))
    datasets = write_study(tmp_path / "study", p)
    for ds in datasets:
        ds.PatientName = "LUNG1-001"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_seg(tmp_path / "seg.dcm", p.truth.array, datasets, [TUMOR_LABEL], model_name="m", model_version="1")
    assert not [w for w in caught if "LUNG1-001" in str(w.message)]
    import pydicom

    assert str(pydicom.dcmread(tmp_path / "seg.dcm").PatientName) == "LUNG1-001"


def test_a_series_without_its_type2_patient_and_study_attributes_still_gets_its_seg(tmp_path):
    """PatientBirthDate, PatientSex, AccessionNumber, StudyID, StudyDate, StudyTime absent (issue 17:
    highdicom raised AttributeError and the model was blamed): present and empty in the SEG, as
    PS3.3 allows for Type 2; the received headers themselves are not changed."""
    import pydicom

    from medseg.core.seg import write_seg
    from medseg.training.config import TUMOR_LABEL
    from tests.conftest import small_phantom, write_study

    p = small_phantom(seed=4, shape=(8, 32, 32))
    datasets = write_study(tmp_path / "study", p)
    gone = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime")
    for ds in datasets:
        for keyword in gone:
            delattr(ds, keyword)
    write_seg(tmp_path / "seg.dcm", p.truth.array, datasets, [TUMOR_LABEL], model_name="m", model_version="1")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert all(keyword in seg and not seg.data_element(keyword).value for keyword in gone)
    assert not any(keyword in datasets[0] for keyword in gone)
