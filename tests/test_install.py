"""medseg as hospital IT installs it: a wheel in a fresh environment, run from outside any checkout,
and the model catalog (the site's store first, the shipped models read-only)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from medseg.models.catalog import ModelCatalog, shipped_root
from tests.conftest import REPO

pytestmark = pytest.mark.model


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_every_finished_model_in_the_checkout_travels_in_the_wheel():
    """A model version committed under models/ but missing from pyproject's data-files would work in a
    checkout and be absent from an installed wheel. A folder still in training (a checkpoint, no
    manifest.json) is not a model and is not shipped."""
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    finished = {m.parent.relative_to(REPO).as_posix() for m in (REPO / "models").glob("*/*/manifest.json")}
    assert finished and data_files == {f"share/medseg/{folder}": [f"{folder}/*"] for folder in finished}


def test_catalog_prefers_the_site_and_copies_a_shipped_version_before_writing(tmp_path):
    shipped = shipped_root()
    assert shipped == REPO / "models"  # a checkout reads its own models/
    catalog = ModelCatalog(tmp_path / "site", shipped)
    assert catalog.path("ct-phantom", "2.1.0") == shipped / "ct-phantom" / "2.1.0"
    assert {"1.0.0", "2.1.0"} <= set(catalog.versions("ct-phantom"))
    before = _digest(shipped / "ct-phantom" / "2.1.0")
    site = catalog.writable("ct-phantom", "2.1.0")
    assert site == tmp_path / "site" / "ct-phantom" / "2.1.0" and catalog.path("ct-phantom", "2.1.0") == site
    assert _digest(site) == before and not list((tmp_path / "site" / "ct-phantom").glob(".*"))
    assert catalog.path("ct-phantom", "9.9.9") == tmp_path / "site" / "ct-phantom" / "9.9.9"  # "not found" there


def test_recording_a_reference_never_writes_the_shipped_files(tmp_path):
    """Issue 18: `models reference 2.0.0` rewrote the tracked manifest.json."""
    from medseg.app import operations
    from medseg.app.context import build_context
    from medseg.config import ServiceSettings, Settings

    shipped = REPO / "models" / "ct-phantom" / "2.0.0"
    before = _digest(shipped)
    ctx = build_context(Settings(service=ServiceSettings(data_dir=tmp_path / "data"))).prepare()
    ref = operations.record_reference(ctx.registry, ctx.auditor, "ct-phantom", "2.0.0", actor="test")
    assert _digest(shipped) == before
    site = tmp_path / "data" / "models" / "ct-phantom" / "2.0.0"
    assert ctx.registry.path("ct-phantom", "2.0.0") == site
    assert hashlib.sha256((site / ref.mask_file).read_bytes()).hexdigest() == ref.mask_sha256


def test_an_installed_wheel_finds_its_models_from_any_directory(tmp_path):
    """Issue 18: a wheel had no models/ and looked in site-packages/models. Built here, installed
    into a new environment (its dependencies borrowed from this one by a .pth file, medseg itself
    only from the wheel), and run from a folder that is not the checkout."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, timeout=600)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    str(next(wheels.glob("medseg-*.whl")))], check=True, capture_output=True, timeout=600)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_medseg_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MEDSEG_DEFAULT_MODEL", "PYTHONPATH")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")

    def medseg(*args):
        return subprocess.run([str(venv / "bin" / "medseg"), *args], cwd=work, capture_output=True, text=True,
                              env={**env, "MEDSEG_DEFAULT_MODEL": "ct-phantom/2.1.0"}, timeout=600)

    where = subprocess.run([str(python), "-c", "import medseg, medseg.models.catalog as c; "
                            "print(medseg.__file__); print(c.shipped_root())"], cwd=work, capture_output=True,
                           text=True, env=env, check=True).stdout.split()
    assert where[0].startswith(str(site)) and where[1] == str(venv / "share" / "medseg" / "models")
    assert medseg("phantom", "--out", "study", "--seed", "3", "--slices", "24", "--size", "64").returncode == 0
    done = medseg("segment", "study/dicom", "--out", "out")
    assert done.returncode == 0, done.stderr
    assert "model ct-phantom 2.1.0" in done.stdout and (work / "out" / "seg.dcm").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["out", "study"]  # nothing else written here
