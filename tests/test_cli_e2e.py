"""End to end through the `medseg` command with the shipped, trained model."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.core.io.nifti import read_nifti
from medseg.core.seg import read_seg_mask
from tests.conftest import PHI_ID, PHI_NAME, dice, small_phantom, write_study
from tests.test_bad_input import run_cli
from tests.test_seg import _dciodvfy_errors

EXE = shutil.which("medseg") or str(Path(sys.executable).parent / "medseg")


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    """`medseg phantom` on a held-out seed (never used in training), kept small for CI."""
    out = tmp_path_factory.mktemp("case") / "case"
    result = subprocess.run(
        [EXE, "phantom", "--out", str(out), "--seed", "900123", "--slices", "48", "--size", "160",
         "--slice-thickness", "3", "--pixel-spacing", "2.2", "--tumors", "3"],
        capture_output=True, text=True, check=True,
    )
    assert "3 tumor(s)" in result.stdout
    return out


@pytest.fixture(scope="module")
def segmented(phantom_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("result")
    result = subprocess.run([EXE, "segment", str(phantom_case / "dicom"), "--out", str(out), "--nifti"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out, result


def test_phantom_writes_series_truth_nifti_and_truth_seg(phantom_case):
    info = json.loads((phantom_case / "phantom.json").read_text())
    assert len(list((phantom_case / "dicom").iterdir())) == info["slices"] == 48
    truth = read_nifti(phantom_case / "truth.nii.gz")
    from medseg.core.io import load_study

    study = load_study(phantom_case / "dicom")
    assert truth.shape == study.volume.shape and np.allclose(truth.affine, study.volume.affine, atol=1e-3)
    seg_truth = read_seg_mask(phantom_case / "truth_seg.dcm", [h.SOPInstanceUID for h in study.volume.source])
    assert np.array_equal(seg_truth, truth.array)
    image = read_nifti(phantom_case / "image.nii.gz")
    assert np.abs(image.array - study.volume.array).max() <= 1.0


def test_phantom_is_reproducible_from_its_seed(tmp_path):
    for name in ("a", "b"):
        subprocess.run([EXE, "phantom", "--out", str(tmp_path / name), "--seed", "5", "--slices", "20", "--size", "64"],
                       check=True, capture_output=True)
    a, b = (nib.load(str(tmp_path / n / "image.nii.gz")).get_fdata() for n in ("a", "b"))
    assert np.array_equal(a, b)


@pytest.mark.model
def test_segment_dicom_writes_seg_nifti_and_result(segmented, phantom_case, shipped_model):
    out, result = segmented
    report = json.loads((out / "result.json").read_text())
    manifest = json.loads((shipped_model / "manifest.json").read_text())
    from medseg.models.manifest import ModelManifest

    identity = ModelManifest.load(shipped_model).manifest_sha256()
    assert report["model"] == {"name": "ct-phantom", "version": manifest["version"], "sha256": manifest["weights"]["sha256"],
                               "manifest_sha256": identity}
    assert report["device"] == "cpu" and report["degraded"] is False
    assert report["lesion_count"] == len(report["lesions"])
    assert set(report["timings_s"]) >= {"load", "preprocess", "inference", "postprocess", "write", "total"}
    assert report["outputs"] == {"seg": "seg.dcm", "nifti": "mask.nii.gz", "result": "result.json"}
    for lesion in report["lesions"]:
        assert lesion["volume_ml"] > 0 and len(lesion["centroid_lps_mm"]) == 3
    assert "lesion" in result.stdout and f"ct-phantom {manifest['version']}" in result.stdout

    mask = read_nifti(out / "mask.nii.gz")
    from medseg.core.io import load_study

    study = load_study(phantom_case / "dicom")
    decoded = read_seg_mask(out / "seg.dcm", [h.SOPInstanceUID for h in study.volume.source])
    assert np.array_equal(decoded, mask.array)
    assert np.allclose(mask.affine, study.volume.affine, atol=1e-3)
    assert _dciodvfy_errors(out / "seg.dcm") == []
    truth = read_nifti(phantom_case / "truth.nii.gz").array
    assert dice(mask.array, truth) > 0.0  # the trained model overlaps the truth at all


@pytest.mark.model
def test_reported_holdout_metrics_are_reproduced_through_the_cli(shipped_model, tmp_path):
    """The manifest's per-study Dice for a held-out phantom is what a user gets with the two commands."""
    metrics = json.loads((shipped_model / "manifest.json").read_text())["metrics"]["holdout_phantoms"]
    seed, reported = next((int(k), v) for k, v in metrics["per_study_dice"].items() if 0.0 < v < 1.0)
    subprocess.run([EXE, "phantom", "--out", str(tmp_path / "case"), "--seed", str(seed)], check=True,
                   capture_output=True)
    subprocess.run([EXE, "segment", str(tmp_path / "case" / "dicom"), "--out", str(tmp_path / "r"), "--nifti"],
                   check=True, capture_output=True)
    measured = dice(read_nifti(tmp_path / "r" / "mask.nii.gz").array, read_nifti(tmp_path / "case" / "truth.nii.gz").array)
    assert measured == pytest.approx(reported, abs=0.02)


@pytest.mark.model
def test_a_sites_acceptance_run_scores_its_cases_and_records_no_case_names(segmented, phantom_case, shipped_model,
                                                                          tmp_path):
    """`medseg evaluate --cases`: the phantom as a site's labelled case (its folder named like a
    patient), twice, once with its mask's axes swapped and reversed; the Dice of the case is the
    Dice of `medseg segment`'s mask; --write-metrics adds the summary to what the manifest already
    reported, and leaves the cases' names out of the manifest."""
    case = tmp_path / "cases" / "DOE_JOHN"
    case.mkdir(parents=True)
    shutil.copyfile(phantom_case / "image.nii.gz", case / "image.nii.gz")
    shutil.copyfile(phantom_case / "truth.nii.gz", case / "mask.nii.gz")
    # the same case with its mask saved by another tool: first two axes swapped, the first reversed
    (tmp_path / "cases" / "DOE_JANE").mkdir()
    shutil.copyfile(phantom_case / "image.nii.gz", tmp_path / "cases" / "DOE_JANE" / "image.nii.gz")
    truth = nib.load(phantom_case / "truth.nii.gz")
    moved = np.asarray(truth.dataobj).transpose(1, 0, 2)[::-1]  # moved[i, j, k] = truth[j, n - 1 - i, k]
    swap_flip = np.array([[0, 1, 0, 0], [-1, 0, 0, truth.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(moved, truth.affine @ swap_flip), tmp_path / "cases" / "DOE_JANE" / "mask.nii.gz")
    model = tmp_path / "ct-phantom" / "9.0.0"
    shutil.copytree(shipped_model, model)
    before = json.loads((model / "manifest.json").read_text())["metrics"]
    result = subprocess.run([EXE, "evaluate", "--model", str(model), "--cases", str(tmp_path / "cases"), "--write-metrics"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    site = json.loads(result.stdout)["site_cases"]
    expected = dice(read_nifti(segmented[0] / "mask.nii.gz").array, read_nifti(phantom_case / "truth.nii.gz").array)
    assert site["per_case"]["DOE_JOHN"]["dice"] == pytest.approx(expected, abs=0.01)
    assert site["per_case"]["DOE_JANE"] == site["per_case"]["DOE_JOHN"]  # the same voxels, in another order
    assert site["studies"] == 2 and site["mean_dice_ci95"] == [site["mean_dice"]] * 2  # two equal cases: no spread
    assert "per_label" not in site  # one lesion label: the foreground is the label
    written = (model / "manifest.json").read_text()
    after = json.loads(written)["metrics"]
    assert after["holdout_phantoms"] == before["holdout_phantoms"]
    assert after["site_cases"]["mean_dice"] == site["mean_dice"] and "DOE_J" not in written
    assert "site_cases" in (model / "MODEL_CARD.md").read_text()


@pytest.mark.model
def test_an_acceptance_run_on_a_pacs_export_scores_the_seg_made_by_hand(segmented, phantom_case, tmp_path):
    """A DICOM case as a PACS exports it: the series, the reader's SEG and medseg's own SEG of it
    side by side. The reference is the reader's, and the case scores what `medseg segment`'s mask
    scores against the truth."""
    case = tmp_path / "cases" / "DOE_RICHARD"
    shutil.copytree(phantom_case / "dicom", case / "images")
    shutil.copyfile(phantom_case / "truth_seg.dcm", case / "reference.dcm")
    shutil.copyfile(segmented[0] / "seg.dcm", case / "ai_result.dcm")
    result = subprocess.run([EXE, "evaluate", "--cases", str(tmp_path / "cases")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)["site_cases"]["per_case"]["DOE_RICHARD"]
    expected = dice(read_nifti(segmented[0] / "mask.nii.gz").array, read_nifti(phantom_case / "truth.nii.gz").array)
    assert scored["dice"] == pytest.approx(expected, abs=1e-4) and "ignored_segments" not in scored
    (case / "reference.dcm").unlink()  # only the AI result is left: no reference
    refused = subprocess.run([EXE, "evaluate", "--cases", str(tmp_path / "cases")], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
    assert "case DOE_RICHARD: only 1 AI result SEG(s) of medseg" in refused.stderr
    assert "[evaluate.case_incomplete]" in refused.stderr


@pytest.mark.model
def test_segment_nifti_in_gives_nifti_out_on_the_same_grid(segmented, phantom_case, tmp_path):
    out = tmp_path / "nifti-result"
    result = subprocess.run([EXE, "segment", str(phantom_case / "image.nii.gz"), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "result.json").read_text())
    assert report["input"]["kind"] == "nifti" and report["seg"] is None
    assert not (out / "seg.dcm").exists()
    source = nib.load(str(phantom_case / "image.nii.gz"))
    mask = nib.load(str(out / "mask.nii.gz"))
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine, atol=1e-4)
    dicom_mask = nib.load(str(segmented[0] / "mask.nii.gz")).get_fdata()
    assert dice(mask.get_fdata(), dicom_mask) > 0.98  # same study, other door


@pytest.mark.model
def test_no_phi_reaches_logs_outputs_or_console(tmp_path, capsys, caplog):
    """The PHI sentinel never reaches a log record, stdout/stderr or result.json."""
    folder = tmp_path / "dicom"
    write_study(folder, small_phantom(seed=8, shape=(24, 64, 64), n_tumors=2))
    caplog.set_level(logging.DEBUG)
    code, out, err = run_cli(["segment", folder, "--out", tmp_path / "out", "--nifti"], capsys)
    assert code == 0, err
    text = out + err + caplog.text + (tmp_path / "out" / "result.json").read_text()
    for sentinel in (PHI_NAME, PHI_ID, "PHI_SENTINEL"):
        assert sentinel not in text
    # the SEG itself carries the patient module: DICOM requires it to file the SEG with the study
    import pydicom

    assert str(pydicom.dcmread(tmp_path / "out" / "seg.dcm").PatientName) == PHI_NAME
