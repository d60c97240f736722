"""Reading a study: scanning messy folders, series selection, geometry rules."""

import copy
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medseg.core.exceptions import GeometryError, NoImageSeriesError, SeriesSelectionError
from medseg.core.io import GeometryTolerances, SelectionRules, load_study
from medseg.core.io.geometry import sort_and_check
from medseg.core.io.scan import scan_folder
from medseg.core.io.selection import select_series
from tests.conftest import small_phantom, write_study


def test_messy_folder_mixed_series_are_grouped_and_the_right_one_chosen(study_dir, tmp_path):
    root = tmp_path / "export"
    # the main series, shuffled into nested folders with odd names, plus junk files
    for i, f in enumerate(sorted(study_dir.iterdir())):
        target = root / f"sub{i % 3}" / "deeper" / f"x{i:03d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, target)
    (root / "README.txt").write_text("not dicom")
    (root / "sub1" / "thumbs.db").write_bytes(b"\x00" * 300)
    shutil.copy(next(study_dir.iterdir()), root / "copy_of_first.dcm")  # duplicate instance
    # a derived series with fewer slices, an MR series, and a coronal reformat
    write_study(root / "derived", small_phantom(seed=3, shape=(10, 64, 64)), series_number=2,
                image_type=("DERIVED", "SECONDARY", "AXIAL"))
    mr = small_phantom(seed=4, shape=(30, 64, 64))
    write_study(root / "mr", mr, series_number=3)
    for f in (root / "mr").iterdir():
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.save_as(f)
    write_study(root / "coronal", small_phantom(seed=5, shape=(30, 64, 64), orientation="coronal"), series_number=4)

    study = load_study(root)
    assert study.volume.shape == (24, 64, 64)
    decisions = {d.series_number: d for d in study.decisions}
    assert decisions[1].chosen and decisions[1].reason == "selected"
    assert "DERIVED" not in decisions[2].reason and "ORIGINAL/PRIMARY" in decisions[2].reason
    assert "modality MR" in decisions[3].reason
    assert "orientation CORONAL" in decisions[4].reason
    assert study.scan_summary["non_dicom_files"] == 2
    assert study.scan_summary["skipped_instances"] == {"duplicate SOPInstanceUID (copy of a file already read)": 1}


def test_most_slices_wins_among_equals_and_explicit_series_overrides(tmp_path):
    a = write_study(tmp_path / "a", small_phantom(seed=1, shape=(12, 32, 32)), series_number=5)
    b = write_study(tmp_path / "b", small_phantom(seed=2, shape=(20, 32, 32)), series_number=6)
    scan = scan_folder(tmp_path)
    chosen, decisions = select_series(scan.series, SelectionRules())
    assert chosen.series_uid == b[0].SeriesInstanceUID
    assert "fewer slices (12)" in next(d.reason for d in decisions if not d.chosen)
    chosen, _ = select_series(scan.series, SelectionRules(series_uid=a[0].SeriesInstanceUID))
    assert chosen.series_uid == a[0].SeriesInstanceUID
    with pytest.raises(SeriesSelectionError, match="not in the input"):
        select_series(scan.series, SelectionRules(series_uid="1.2.3"))


def test_blank_sop_class_uid_is_inferred_and_missing_instance_uid_is_skipped(study_copy):
    files = sorted(study_copy.iterdir())
    ds = pydicom.dcmread(files[0])
    ds.SOPClassUID = ""
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    ds.save_as(files[0])
    scan = scan_folder(study_copy)
    assert all(h.SOPClassUID == pydicom.uid.CTImageStorage for h in scan.series[0].headers)

    ds = pydicom.dcmread(files[1])
    del ds.SOPInstanceUID
    del ds.file_meta.MediaStorageSOPInstanceUID
    ds.save_as(files[1], enforce_file_format=False)
    scan = scan_folder(study_copy)
    assert scan.skipped == {"SOPInstanceUID missing (instance cannot be referenced)": 1}
    # IM0002 is the second slice of the stack: one slice short, and the geometry check says so
    with pytest.raises(GeometryError, match="missing slice"):
        load_study(study_copy)


def test_missing_study_uid_is_skipped_with_reason(study_copy):
    for f in study_copy.iterdir():
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = ""
        ds.save_as(f)
    with pytest.raises(NoImageSeriesError, match="StudyInstanceUID missing"):
        scan_folder(study_copy)


# --- geometry rules on headers (no files needed) ---


def _headers(n=6, spacing=2.0, iop=(1, 0, 0, 0, 1, 0)):
    out = []
    for k in range(n):
        ds = Dataset()
        ds.ImageOrientationPatient = list(iop)
        ds.ImagePositionPatient = [0.0, 0.0, k * spacing]
        ds.PixelSpacing = [0.8, 0.8]
        ds.Rows, ds.Columns = 32, 32
        out.append(ds)
    return out


def test_geometry_sorts_by_position_and_builds_the_affine():
    headers = _headers()
    shuffled = [headers[i] for i in (3, 0, 5, 1, 4, 2)]
    order, affine = sort_and_check(shuffled)
    assert [shuffled[i].ImagePositionPatient[2] for i in order] == [0, 2, 4, 6, 8, 10]
    assert np.allclose(affine[:3, :3], np.array([[0, 0, 0.8], [0, 0.8, 0], [2.0, 0, 0]]))


def _mutate(headers, k, **attrs):
    headers = copy.deepcopy(headers)
    for key, value in attrs.items():
        setattr(headers[k], key, value)
    return headers


@pytest.mark.parametrize(
    "headers,attribute,rule",
    [
        (_mutate(_headers(), 2, ImageOrientationPatient=[0, 1, 0, 0, 0, -1]), "ImageOrientationPatient", "inconsistent"),
        (_mutate(_headers(), 3, ImagePositionPatient=[0, 0, 6.5]), "ImagePositionPatient", "non-uniform slice spacing"),
        (_headers()[:2] + _headers()[3:], "ImagePositionPatient", "missing slice"),
        (_mutate(_headers(), 3, ImagePositionPatient=[0, 0, 4.0]), "ImagePositionPatient", "duplicate slice position"),
        ([_mutate(_headers(), k, ImagePositionPatient=[0, k * 0.5, k * 2.0])[k] for k in range(6)],
         "ImagePositionPatient", "gantry tilt"),
        (_mutate(_headers(), 1, Rows=64), "Rows", "inconsistent"),
        (_mutate(_headers(), 1, PixelSpacing=[0.9, 0.8]), "PixelSpacing", "inconsistent"),
        (_headers(n=1), "ImagePositionPatient", "at least two slices"),
        (_mutate(_headers(), 0, ImageOrientationPatient=[1, 0, 0, 1, 0, 0]), "ImageOrientationPatient", None),
    ],
    ids=["mixed-orientation", "non-uniform", "missing-slice", "duplicate", "gantry-tilt", "rows", "pixel-spacing",
         "single-slice", "degenerate-orientation"],
)
def test_geometry_violations_name_attribute_and_rule(headers, attribute, rule):
    with pytest.raises(GeometryError) as info:
        sort_and_check(headers)
    assert info.value.attribute == attribute
    if rule:
        assert rule in info.value.rule
    assert info.value.code.startswith("geometry.")


def test_missing_required_geometry_attribute():
    headers = _headers()
    del headers[2].PixelSpacing
    with pytest.raises(GeometryError, match="PixelSpacing: required attribute missing"):
        sort_and_check(headers)


def test_spacing_tolerance_is_configurable():
    headers = _mutate(_headers(), 3, ImagePositionPatient=[0, 0, 6.06])  # 3 % off
    with pytest.raises(GeometryError):
        sort_and_check(headers)
    sort_and_check(headers, GeometryTolerances(slice_spacing=0.05))


def test_hounsfield_units_follow_rescale(study_copy):
    reference = load_study(study_copy).volume.array.copy()
    for f in study_copy.iterdir():
        ds = pydicom.dcmread(f)
        pixels = ds.pixel_array.astype(np.int32)
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024"
        ds.PixelData = (pixels * 2).astype(np.uint16).tobytes()
        ds.BitsStored, ds.HighBit = 16, 15
        ds.save_as(f)
    assert np.array_equal(load_study(study_copy).volume.array, reference)
