"""Bad input: one clear line on stderr, a non-zero exit, never a traceback."""

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from medseg.app.cli import main as cli


def run_cli(args, capsys):
    """The real entry point, in process (fast); returns (exit code, stdout, stderr)."""
    saved = sys.argv
    sys.argv = ["medseg", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as info:
            cli.main()
            raise SystemExit(0)
    finally:
        sys.argv = saved
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def _files(folder: Path):
    return sorted(folder.iterdir())


def _empty(tmp_path, study_copy):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _no_dicom(tmp_path, study_copy):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 200)
    return folder


def _only_non_image(tmp_path, study_copy):
    folder = tmp_path / "nonimage"
    folder.mkdir()
    for keyword, sop_class in [("SR", "1.2.840.10008.5.1.4.1.1.88.11"), ("RTSTRUCT", "1.2.840.10008.5.1.4.1.1.481.3")]:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        ds.Modality = keyword
        ds.save_as(folder / keyword, enforce_file_format=True)
    return folder


def _single_slice(tmp_path, study_copy):
    for f in _files(study_copy)[1:]:
        f.unlink()
    return study_copy


def _rewrite(folder, index, **attrs):
    f = _files(folder)[index]
    ds = pydicom.dcmread(f)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(f)


def _mixed_orientation(tmp_path, study_copy):
    _rewrite(study_copy, 5, ImageOrientationPatient=[1, 0, 0, 0, 0.9, -0.43589])
    return study_copy


def _non_uniform(tmp_path, study_copy):
    ds = pydicom.dcmread(_files(study_copy)[5])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    _rewrite(study_copy, 5, ImagePositionPatient=[x, y, z + 0.9])
    return study_copy


def _missing_slice(tmp_path, study_copy):
    _files(study_copy)[7].unlink()
    return study_copy


def _truncated(tmp_path, study_copy):
    f = _files(study_copy)[3]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 3000])
    return study_copy


def _missing_pixel_data(tmp_path, study_copy):
    f = _files(study_copy)[3]
    ds = pydicom.dcmread(f)
    del ds.PixelData
    ds.save_as(f)
    return study_copy


def _zero_rescale_slope(tmp_path, study_copy):  # issue 17: a blank -1024 HU volume became a normal empty SEG
    for f in _files(study_copy):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope = "0"
        ds.save_as(f)
    return study_copy


def _pixels(study_copy, make):
    """Replace every slice's stored values (``make(shape, slice index)``), keeping the rescale."""
    for k, f in enumerate(_files(study_copy)):
        ds = pydicom.dcmread(f)
        ds.PixelData = make(ds.pixel_array.shape, k).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(f)
    return study_copy


def _constant_volume(tmp_path, study_copy):  # issue 17: a constant or non-physical image is refused
    return _pixels(study_copy, lambda shape, k: np.full(shape, 1024))


def _only_air(tmp_path, study_copy):
    rng = np.random.default_rng(0)
    return _pixels(study_copy, lambda shape, k: rng.integers(0, 60, shape))  # -1024..-965 HU: air and noise


def _unsupported_modality(tmp_path, study_copy):
    for i in range(len(_files(study_copy))):
        _rewrite(study_copy, i, Modality="MR")
    return study_copy


def _unsupported_syntax(tmp_path, study_copy):
    for f in _files(study_copy):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
        ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        ds.save_as(f, enforce_file_format=True)
    return study_copy


def _nifti(affine, tmp_path, name, zero_codes=False):
    image = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), affine)
    if zero_codes:
        image.set_qform(None, code=0)
        image.set_sform(None, code=0)
    path = tmp_path / name
    nib.save(image, str(path))
    return path


def _nifti_broken_sform(tmp_path, name, row, values):
    """A NIfTI whose sform (the affine readers use) is damaged; nibabel itself refuses to write one."""
    path = _nifti(np.eye(4), tmp_path, name)
    image = nib.load(str(path))
    header = image.header.copy()
    header.set_qform(None, code=0)
    header[row] = values
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), None, header), str(path))
    return path


def _nifti_singular(tmp_path, study_copy):
    return _nifti_broken_sform(tmp_path, "singular.nii.gz", "srow_y", [0, 0, 0, 0])


def _nifti_nan(tmp_path, study_copy):
    return _nifti_broken_sform(tmp_path, "nan.nii.gz", "srow_x", [np.nan, 0, 0, 0])


def _nifti_no_geometry(tmp_path, study_copy):
    return _nifti(np.eye(4), tmp_path, "nogeom.nii.gz", zero_codes=True)


def _nifti_label_mask(tmp_path, study_copy):  # issue 18: a real expert mask was segmented as if it were CT
    return Path(__file__).parent / "data" / "sts-ct" / "STS_006" / "CT_mask.nii.gz"


def _nifti_raw_values(tmp_path, study_copy):  # a real CT's stored values without their rescale (+32768)
    ct = nib.load(str(Path(__file__).parent / "data" / "sts-ct" / "STS_006" / "CT_image.nii.gz"))
    path = tmp_path / "raw.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(ct.dataobj).astype(np.int32) + 32768, ct.affine), str(path))
    return path


def _not_there(tmp_path, study_copy):
    return tmp_path / "does-not-exist"


CASES = {
    "empty-folder": (_empty, "input folder is empty"),
    "no-dicom": (_no_dicom, "no DICOM files"),
    "only-non-image": (_only_non_image, "only non-image objects"),
    "single-slice": (_single_slice, "single slice"),
    "mixed-orientations": (_mixed_orientation, "ImageOrientationPatient: inconsistent within series"),
    "non-uniform-spacing": (_non_uniform, "non-uniform slice spacing"),
    "missing-slice": (_missing_slice, "missing slice"),
    "truncated-file": (_truncated, "slice"),
    "missing-pixel-data": (_missing_pixel_data, "PixelData missing"),
    "zero-rescale-slope": (_zero_rescale_slope, "RescaleSlope is 0, so every pixel would be -1024 HU [decode.rescale_slope]"),
    "constant-volume": (_constant_volume, "a blank (constant) image, nothing to segment [decode.constant_volume]"),
    "only-air": (_only_air, "below -900 HU (air): no tissue in the image [decode.no_tissue]"),
    "unsupported-modality": (_unsupported_modality, "modality MR not in ['CT']"),
    "undecodable-transfer-syntax": (_unsupported_syntax, "MPEG2"),
    "nifti-singular-affine": (_nifti_singular, "singular"),
    "nifti-nan-affine": (_nifti_nan, "NaN"),
    "nifti-no-geometry": (_nifti_no_geometry, "qform_code are both 0"),
    "nifti-label-mask": (_nifti_label_mask, "a label mask, not a CT image in HU [decode.label_mask]"),
    "nifti-raw-values": (_nifti_raw_values, "not CT values (pixels without their rescale?) [decode.non_physical_hu]"),
    "input-missing": (_not_there, "does not exist"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_nonzero_exit(case, tmp_path, study_copy, capsys):
    make, fragment = CASES[case]
    path = make(tmp_path, study_copy)
    code, out, err = run_cli(["segment", path, "--out", tmp_path / "out"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("medseg: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err + out
    assert not (tmp_path / "out" / "seg.dcm").exists()


def test_truncated_pixel_data_is_a_decode_error(tmp_path, study_copy, capsys):
    _truncated(tmp_path, study_copy)
    code, _, err = run_cli(["segment", study_copy, "--out", tmp_path / "out"], capsys)
    assert code == 2 and ("decode." in err)


def test_real_console_script_reports_errors_the_same_way(tmp_path):
    """Through the installed `medseg` executable, as a user runs it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    exe = shutil.which("medseg") or str(Path(sys.executable).parent / "medseg")
    result = subprocess.run([exe, "segment", str(empty), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "medseg: error: input folder is empty [input.empty]"


def test_usage_errors_and_bad_settings_are_one_line(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["phantom", "--out", tmp_path / "p", "--transfer-syntax", "bogus"], capsys)
    assert code == 2 and "Invalid value for --transfer-syntax: 'bogus' is not one of 'explicit'" in err
    from medseg.config import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("MEDSEG_DEVICE", "tpu")
    try:
        code, _, err = run_cli(["segment", tmp_path, "--out", tmp_path / "o"], capsys)
    finally:
        get_settings.cache_clear()
    assert code == 2 and "invalid setting device" in err and len(err.strip().splitlines()) == 1


def test_requesting_an_absent_gpu_is_a_clear_error(study_dir, tmp_path, capsys):
    import torch

    # without CUDA any cuda device is absent; with CUDA, device index 99 is
    expected = "GPU(s) present" if torch.cuda.is_available() else "CUDA is not available"
    code, _, err = run_cli(["segment", study_dir, "--out", tmp_path / "o", "--device", "cuda:99"], capsys)
    assert code == 2 and expected in err


@pytest.mark.parametrize("args, says", [
    (["segment"], "Missing argument 'input'"),
    (["segment", "x", "--bogus"], "No such option: --bogus"),
    (["models", "promote"], "Missing argument"),
    (["tokens", "create", "x"], "Missing option '--role'"),
])
def test_usage_errors_are_the_users_not_internal_errors(args, says, capsys):
    code, _, err = run_cli(args, capsys)
    assert code == 2 and says in err and "internal error" not in err


def test_version(capsys):
    from medseg import __version__

    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"medseg {__version__}"


def _listening(tmp_path):
    """A config whose DICOM port another process (this test) is listening on."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = tmp_path / "busy.toml"
    config.write_text(f'[service]\ndata_dir = "data"\nhttp_port = 0\n[node]\nport = {sock.getsockname()[1]}\n')
    return sock, config


@pytest.mark.parametrize("args, says", [  # issue 18: each of these was an internal error or a traceback
    (["phantom", "--out", "{tmp}/p", "--orientation", "upside"],
     "Invalid value for --orientation: 'upside' is not one of 'supine', 'prone'"),
    (["phantom", "--out", "{tmp}/a-file"], "medseg: error: --out {tmp}/a-file: exists and is not a folder [cli.out_not_folder]"),
    (["phantom", "--out", "{tmp}/p", "--seed", "-5"], "Invalid value for '--seed': Input should be greater than or equal to 0"),
    (["train", "--out", "{tmp}/m", "--seed", "-1"], "Invalid value for '--seed': Input should be greater than or equal to 0"),
    (["segment", "{tmp}", "--out", "{tmp}/a-file"], "exists and is not a folder [cli.out_not_folder]"),
    (["audit", "query", "--since", "last tuesday", "-c", "{tmp}/busy.toml"],
     "medseg: error: --since: not a time: 'last tuesday' (use 30m, 24h, 7d, 2w, today, yesterday or an ISO 8601"),
    (["monitor", "report", "--png", "{tmp}", "-c", "{tmp}/busy.toml"], "--png {tmp}: is a folder, give a file name [cli.out_is_folder]"),
    (["audit", "export", "--out", "{tmp}/no/such/x.jsonl"], "folder {tmp}/no/such does not exist [cli.out_no_folder]"),
    (["audit", "timeline", "1.2.3.4", "-c", "{tmp}/busy.toml"],
     "medseg: error: the audit trail has no event for this study [audit.study_not_found]"),
    (["monitor", "report", "--model", "nosuch:1.0", "-c", "{tmp}/busy.toml"],
     "medseg: error: no model nosuch/1.0 in the model store, and no reviews of it [monitor.unknown_model]"),
    (["serve", "-c", "{tmp}/busy.toml"], "medseg: error: DICOM [node] port 127.0.0.1:{port} is in use by another process "
                                          "[serve.port_unavailable]"),
])
def test_operator_mistakes_are_one_line_with_a_code(args, says, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    sock, _ = _listening(tmp_path)
    with sock:
        port = sock.getsockname()[1]
        fill = {"tmp": tmp_path, "port": port}
        if "audit" in args or "monitor" in args:  # an existing service's data: the read commands need one
            run_cli(["tokens", "create", "probe", "--role", "viewer", "-c", tmp_path / "busy.toml"], capsys)
        code, out, err = run_cli([a.format(**fill) for a in args], capsys)
        if "timeline" in args:  # asked again: the first read (audited) did not make the study known
            code, out, err = run_cli([a.format(**fill) for a in args], capsys)
    assert code == 2, err
    assert says.format(**fill) in err
    assert "Traceback" not in err + out and "internal error" not in err
    assert "listening" not in out  # serve: no banner before the failure


def test_time_windows_mean_the_same_in_every_command():
    import datetime as dt

    from audit.query import parse_time
    from medseg.quality.report import parse_since

    now = dt.datetime(2026, 12, 1, 15, 30)
    assert parse_time("yesterday", now) == dt.datetime(2026, 11, 30) == parse_since("yesterday", now)
    assert parse_time("today", now) == dt.datetime(2026, 12, 1)
    assert parse_time("7d", now) == parse_since("7d", now) == dt.datetime(2026, 11, 24, 15, 30)
    assert parse_time("30m", now) == dt.datetime(2026, 12, 1, 15, 0)
    assert parse_time("2026-11-01T08:00+01:00", now) == dt.datetime(2026, 11, 1, 7, 0)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("last tuesday", now)
