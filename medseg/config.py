"""Typed settings (pydantic-settings), reached through ``get_settings()``.

Sources, highest first: explicit arguments (CLI flags), environment variables
``MEDSEG_*`` (nested with ``__``, e.g. ``MEDSEG_SELECTION__MIN_SLICES=10``),
defaults. Unsafe or meaningless values are refused at start-up, never coerced.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from medseg.io import GeometryTolerances, SelectionRules

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "ct-tumor/1.0.0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDSEG_", env_nested_delimiter="__", extra="forbid", frozen=True)

    #: the model store: one folder per model version, models/<name>/<version>/
    models_root: Path = REPO_ROOT / "models"
    #: model used by `medseg segment` unless --model is given (name/version under models_root)
    default_model: str = DEFAULT_MODEL
    #: auto (CUDA when available, else CPU), cpu, cuda, cuda:N
    device: str = "auto"
    #: mixed precision on CUDA (ignored on CPU)
    amp: bool = True
    selection: SelectionRules = SelectionRules()
    geometry: GeometryTolerances = GeometryTolerances()
    #: torch CPU threads; 0 = all cores
    cpu_threads: int = Field(default=0, ge=0)

    @field_validator("default_model")
    @classmethod
    def _model_ref(cls, v: str) -> str:
        parts = v.split("/")
        if len(parts) != 2 or any(not p or p.startswith(".") for p in parts):
            raise ValueError("must be <name>/<version>, e.g. ct-tumor/1.0.0")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = v.lower()
        if v not in ("auto", "cpu", "cuda") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    def model_dir(self, ref: str | None = None) -> Path:
        """Resolve a model argument: a folder path, or <name>/<version> under models_root."""
        ref = ref or self.default_model
        candidate = Path(ref)
        if candidate.is_dir():
            return candidate
        return self.models_root / ref


@lru_cache
def get_settings() -> Settings:
    return Settings()
