"""Transfer syntaxes real scanners send: each decodes to the same Hounsfield units."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid

from medseg.core.exceptions import DecodeError
from medseg.core.io import load_study
from medseg.core.io.decode import read_hu_slices
from tests.conftest import small_phantom, write_study

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _data_store() -> Path:
    import data_store  # the pydicom-data package: sample files installed locally, nothing downloaded

    return Path(data_store.__file__).parent / "data"


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    phantom = small_phantom(seed=11, shape=(12, 48, 48))
    write_study(root / "explicit", phantom)
    reference = load_study(root / "explicit").volume.array
    return root, reference


@pytest.mark.parametrize(
    "syntax,kwargs",
    [
        (uid.ImplicitVRLittleEndian, {}),
        (uid.DeflatedExplicitVRLittleEndian, {}),
        (uid.RLELossless, {}),
        (uid.JPEGLSLossless, {}),
        (uid.JPEG2000Lossless, {}),
    ],
    ids=lambda v: getattr(v, "name", "")
)
def test_lossless_syntaxes_written_by_pydicom_decode_identically(phantom_series, syntax, kwargs):
    root, reference = phantom_series
    folder = root / syntax.replace(".", "_")
    shutil.copytree(root / "explicit", folder)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        if syntax.is_compressed:
            ds.compress(syntax, **kwargs)
        else:
            ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(f, enforce_file_format=True)
    study = load_study(folder)
    assert study.transfer_syntaxes == [syntax.name]
    assert np.array_equal(study.volume.array, reference)


@pytest.mark.parametrize(
    "tool,args,syntax",
    [
        ("dcmcjpeg", ["+e1"], uid.JPEGLosslessSV1),
        ("dcmcjpeg", ["+el"], uid.JPEGLossless),
        ("dcmcjpls", ["+el"], uid.JPEGLSLossless),
        ("dcmcrle", [], uid.RLELossless),
    ],
    ids=["jpeg-lossless-sv1", "jpeg-lossless", "jpeg-ls", "rle"],
)
def test_lossless_syntaxes_written_by_dcmtk_decode_identically(phantom_series, tool, args, syntax):
    root, reference = phantom_series
    folder = root / f"dcmtk_{tool}_{'_'.join(args)}"
    folder.mkdir()
    for f in (root / "explicit").iterdir():
        subprocess.run([tool, *args, str(f), str(folder / f.name)], check=True, capture_output=True)
    study = load_study(folder)
    assert study.transfer_syntaxes == [syntax.name]
    assert np.array_equal(study.volume.array, reference)


def test_lossy_jpeg2000_decodes_close_to_the_original(phantom_series):
    root, reference = phantom_series
    folder = root / "j2k_lossy"
    shutil.copytree(root / "explicit", folder)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.compress(uid.JPEG2000, j2k_psnr=[60])
        ds.save_as(f, enforce_file_format=True)
    study = load_study(folder)
    assert study.transfer_syntaxes == [uid.JPEG2000.name]
    assert not np.array_equal(study.volume.array, reference)
    assert np.abs(study.volume.array - reference).mean() < 5.0


@pytest.mark.parametrize(
    "compressed,uncompressed",
    [
        ("pydicom:MR_small_RLE.dcm", "pydicom:MR_small.dcm"),
        ("pydicom:MR_small_jp2klossless.dcm", "pydicom:MR_small.dcm"),
        ("pydicom:MR_small_jpeg_ls_lossless.dcm", "pydicom:MR_small.dcm"),
        ("pydicom:MR_small_implicit.dcm", "pydicom:MR_small.dcm"),
        ("data_store:MR2_J2KR.dcm", "data_store:MR2_UNCR.dcm"),
        ("data_store:693_J2KR.dcm", "data_store:693_UNCR.dcm"),
        ("data_store:RG1_J2KR.dcm", "data_store:RG1_UNCR.dcm"),
    ],
)
def test_reference_sample_files_decode_to_their_uncompressed_twins(compressed, uncompressed):
    def path(spec):
        where, name = spec.split(":")
        return (PYDICOM_FILES if where == "pydicom" else _data_store()) / name

    def decode(p):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        return read_hu_slices([p], [ds], int(ds.Rows), int(ds.Columns))

    assert np.array_equal(decode(path(compressed)), decode(path(uncompressed)))


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "MR2_J2KI.dcm"])
def test_other_reference_encodings_decode(name):
    p = _data_store() / name
    ds = pydicom.dcmread(p, stop_before_pixels=True)
    out = read_hu_slices([p], [ds], int(ds.Rows), int(ds.Columns))
    assert out.shape == (1, ds.Rows, ds.Columns) and np.isfinite(out).all() and out.std() > 0


def test_undecodable_transfer_syntax_is_a_clear_error(study_copy):
    for f in study_copy.iterdir():
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder for CT slices
        ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
        ds["PixelData"].VR = "OB"
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(DecodeError, match="MPEG2") as info:
        load_study(study_copy)
    assert info.value.code == "decode.unsupported_transfer_syntax"
