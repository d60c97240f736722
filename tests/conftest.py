"""Shared fixtures: small phantom studies with obviously fake PHI, strict pydicom, the shipped model."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.core.phantom import generate_phantom
from medseg.training.ct_writer import ct_datasets, write_series

REPO = Path(__file__).resolve().parent.parent
#: the integration tests and the incident scenario run on the phantom-trained model, whose
#: behaviour on phantoms is known, never on the real-CT default (its quality is not theirs to test);
#: subprocesses inherit this, tests of the real-CT model name it
PHANTOM_MODEL = "ct-phantom/2.1.0"
os.environ["MEDSEG_DEFAULT_MODEL"] = PHANTOM_MODEL
SHIPPED_MODEL = REPO / "models" / PHANTOM_MODEL
TEST_DATA = Path(__file__).resolve().parent / "data"
#: pytorch-ignite, which `python -m monai.bundle run` needs for a zoo bundle's evaluator config, is
#: installed apart from the product (Makefile: ORACLE) so that no medseg process imports it
ORACLE_PATH = Path(sys.prefix) / "oracle"
PHI_NAME = "TEST^PHI_SENTINEL"
PHI_ID = "PHI_SENTINEL_ID_0042"


@pytest.fixture(autouse=True)
def strict_pydicom():
    """Strict validation while writing: we must never emit invalid values."""
    config = pydicom.config.settings
    saved = config.writing_validation_mode
    config.writing_validation_mode = pydicom.config.RAISE
    yield
    config.writing_validation_mode = saved


def monai_bundle_env() -> dict[str, str]:
    """The environment of the oracle, `python -m monai.bundle run`: this one with ignite importable."""
    if not (ORACLE_PATH / "ignite").is_dir():
        raise RuntimeError(f"pytorch-ignite is not in {ORACLE_PATH}: run `make setup`")
    path = os.pathsep.join(filter(None, (str(ORACLE_PATH), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path}


def small_phantom(seed=7, shape=(24, 64, 64), spacing=(3.0, 3.0, 3.0), orientation="supine", n_tumors=2):
    return generate_phantom(seed, shape=shape, spacing=spacing, orientation=orientation, n_tumors=n_tumors)


def write_study(folder: Path, phantom, transfer_syntax=pydicom.uid.ExplicitVRLittleEndian, **kwargs) -> list:
    datasets = ct_datasets(phantom.image, patient_name=PHI_NAME, patient_id=PHI_ID, **kwargs)
    write_series(datasets, folder, transfer_syntax)
    return datasets


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory) -> Path:
    """A small supine phantom study (anisotropic spacing) as a DICOM folder, written once."""
    folder = tmp_path_factory.mktemp("study") / "dicom"
    write_study(folder, small_phantom(shape=(24, 64, 64), spacing=(2.5, 3.1, 3.1)))
    return folder


@pytest.fixture
def study_copy(study_dir, tmp_path) -> Path:
    """A private copy of ``study_dir`` that a test may damage."""
    return Path(shutil.copytree(study_dir, tmp_path / "dicom"))


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    assert (SHIPPED_MODEL / "manifest.json").is_file(), "the trained default model must be committed"
    return SHIPPED_MODEL


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / float(total)
