import subprocess
import sys

import pytest
from pydantic import ValidationError

from medseg.config import REPO_ROOT, Settings


def test_defaults_point_at_the_shipped_model():
    s = Settings()
    assert s.model_dir() == REPO_ROOT / "models" / "ct-tumor" / "1.0.0"
    assert s.selection.modalities == ("CT",) and s.device == "auto"


def test_environment_overrides_nested_rules(monkeypatch):
    monkeypatch.setenv("MEDSEG_SELECTION__MIN_SLICES", "12")
    monkeypatch.setenv("MEDSEG_GEOMETRY__SLICE_SPACING", "0.05")
    monkeypatch.setenv("MEDSEG_DEVICE", "CUDA:1")
    s = Settings()
    assert s.selection.min_slices == 12 and s.geometry.slice_spacing == 0.05 and s.device == "cuda:1"


@pytest.mark.parametrize(
    "field,value",
    [("device", "tpu"), ("default_model", "../../etc"), ("default_model", "ct-tumor"), ("cpu_threads", -1)],
)
def test_unsafe_or_meaningless_settings_are_refused(field, value):
    with pytest.raises(ValidationError):
        Settings(**{field: value})


def test_import_is_instant_and_side_effect_free():
    """STYLE.md #3: importing medseg loads neither torch nor MONAI nor highdicom."""
    code = "import sys, medseg; print(any(m in sys.modules for m in ('torch', 'monai', 'highdicom')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "medseg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "segment" in out.stdout and "phantom" in out.stdout
