"""Typed settings (pydantic-settings), reached through ``get_settings()``.

Sources, highest first: explicit arguments (CLI flags), environment variables
``MEDSEG_*`` (nested with ``__``, e.g. ``MEDSEG_SELECTION__MIN_SLICES=10``),
defaults. Unsafe or meaningless values are refused at start-up, never coerced.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from medseg.core.io import GeometryTolerances, SelectionRules

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "ct-tumor/2.1.0"


#: the configuration file `medseg serve --config` names (also settable as MEDSEG_CONFIG)
CONFIG_ENV = "MEDSEG_CONFIG"
_AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$")


def _ae_title(v: str) -> str:
    """PS3.5 AE title: 1-16 characters of the default repertoire, no backslash, no leading/trailing space."""
    if not _AE_TITLE.match(v):
        raise ValueError("must be 1-16 printable ASCII characters without backslash or leading/trailing spaces")
    return v


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TLSSettings(_Section):
    """DICOM TLS (PS3.15 B.1). Enabled when a certificate is configured."""

    cert: Path | None = None
    key: Path | None = None
    #: CA bundle that client certificates must chain to
    ca: Path | None = None
    require_client_cert: bool = True
    #: a peer that opens TCP but does not finish the handshake in this time is dropped (and audited)
    handshake_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> "TLSSettings":
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        if self.cert is not None and self.require_client_cert and self.ca is None:
            raise ValueError("require_client_cert needs a ca bundle to verify client certificates against")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert is not None


class DestinationSettings(_Section):
    """A DICOM peer we send SEGs to (C-STORE SCU)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    #: CA bundle to verify the destination's certificate, and our client certificate/key
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("ae_title")
    @classmethod
    def _peer_ae(cls, v: str) -> str:
        return _ae_title(v)


class NodeSettings(_Section):
    """The DICOM node: our AE, association policy, spool and study assembly."""

    ae_title: str = "MEDSEG"
    host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=0, le=65535)
    max_associations: int = Field(default=10, ge=1)
    max_pdu: int = Field(default=65536, ge=0)  # 0 = unlimited
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    network_timeout_s: float = Field(default=60.0, gt=0)
    #: calling AE titles allowed to associate; empty = any (the README says why that is not the default in production)
    allowed_calling_aets: tuple[str, ...] = ()
    #: peer IP addresses allowed to connect; empty = any
    allowed_addresses: tuple[str, ...] = ()
    tls: TLSSettings = TLSSettings()
    #: C-STORE answers 0xA700 (out of resources) while free space under the spool is below this
    disk_floor_mb: float = Field(default=1024.0, ge=0)
    #: a series is complete when no instance arrived for this long
    quiet_period_s: float = Field(default=10.0, gt=0)
    #: a series with a slice gap waits this much longer for the missing slices before it fails visibly
    continuity_grace_s: float = Field(default=10.0, ge=0)
    destinations: tuple[DestinationSettings, ...] = ()
    #: where SEGs go: destination names, "@sender" = the destination whose AE title sent the study
    send_to: tuple[str, ...] = ("@sender",)
    send_retries: int = Field(default=5, ge=0)
    send_backoff_s: float = Field(default=2.0, gt=0)
    send_backoff_max_s: float = Field(default=300.0, gt=0)

    @field_validator("ae_title")
    @classmethod
    def _our_ae(cls, v: str) -> str:
        return _ae_title(v)

    @field_validator("allowed_calling_aets")
    @classmethod
    def _aets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_ae_title(a) for a in v)

    @model_validator(mode="after")
    def _routes(self) -> "NodeSettings":
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique")
        unknown = [n for n in self.send_to if n != "@sender" and n not in names]
        if unknown:
            raise ValueError(f"send_to names unknown destinations: {unknown}")
        return self


class ServiceSettings(_Section):
    """`medseg serve`: where state lives and the HTTP API."""

    #: data directory: spool/, results/ and (by default) the SQLite database
    data_dir: Path = Path("medseg-data")
    #: SQLAlchemy URL; empty = SQLite (WAL) at <data_dir>/medseg.db
    database_url: str = ""
    #: the HTTP API binds to loopback by default (authentication comes with a later issue)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    #: worker threads running segmentations
    workers: int = Field(default=1, ge=1)
    #: seconds between polls of the job table by idle workers
    poll_interval_s: float = Field(default=0.5, gt=0)
    #: a model version that has not finished a study's inference in this time has failed on it
    #: (the study then goes to the previous good version)
    model_time_budget_s: float = Field(default=600.0, gt=0)

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'medseg.db').resolve()}"


class AuditSettings(_Section):
    """The audit trail (audit/): where it lives and how its head is anchored outside the database."""

    #: SQLAlchemy URL; empty = the service database, so job state and its events commit together
    database_url: str = ""
    #: write the chain head (sequence, hash) to the anchors file and the log every N events
    anchor_every: int = Field(default=1000, ge=1)
    #: anchors file; empty = <data_dir>/audit-anchors.jsonl. Copy it off-host to detect tail truncation.
    anchors_file: Path | None = None
    #: key of the patient-ID hash (32+ random bytes); created with mode 0600 on first start if missing.
    #: empty = <data_dir>/audit.key
    patient_key_file: Path | None = None


#: quality metrics an SLO can watch, and which direction is good
SLO_METRICS = {"dice": "min", "lesion_sensitivity": "min", "lesion_sensitivity_ge10": "min", "fn_rate": "max"}


class SLOSettings(_Section):
    """One service-level objective on review metrics of a model version, e.g. ``fn_rate <= 0.15``."""

    name: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    #: dice, fn_rate (voxel false-negative rate), lesion_sensitivity, lesion_sensitivity_ge10
    metric: str
    #: the objective: a floor for dice/sensitivity, a ceiling for fn_rate
    objective: float = Field(gt=0, lt=1)
    #: alert: notify only; fallback: also roll the model back to the previous version
    policy: str = Field(default="alert", pattern=r"^(alert|fallback)$")

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in SLO_METRICS:
            raise ValueError(f"must be one of {sorted(SLO_METRICS)}")
        return v


class MonitoringSettings(_Section):
    """Quality monitoring: review windows, SLOs, drift monitors and where alerts go."""

    #: the long window: the last N reviews of a model version ...
    window_reviews: int = Field(default=50, ge=2)
    #: ... within the last T days
    window_days: float = Field(default=30.0, gt=0)
    #: the short window (burn rate now): the last N reviews
    short_window_reviews: int = Field(default=10, ge=2)
    #: no alert from a window with fewer reviews than this (3 reviews must not page anyone)
    min_reviews: int = Field(default=5, ge=3)
    #: confidence level of the intervals; an SLO is breached only when the whole interval misses it
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    slos: tuple[SLOSettings, ...] = (
        SLOSettings(name="lesion-sensitivity", metric="lesion_sensitivity", objective=0.90, policy="alert"),
        SLOSettings(name="voxel-fn-rate", metric="fn_rate", objective=0.15, policy="fallback"),
    )
    #: drift: the first N studies of a model name are the baseline, the last N the current window
    drift_baseline: int = Field(default=50, ge=5)
    drift_window: int = Field(default=50, ge=5)
    #: webhook for alerts (HTTP POST, JSON); empty = none. Retried with exponential backoff.
    webhook_url: str = ""
    webhook_retries: int = Field(default=5, ge=0)
    webhook_backoff_s: float = Field(default=2.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _windows(self) -> "MonitoringSettings":
        if self.short_window_reviews > self.window_reviews:
            raise ValueError("short_window_reviews must not exceed window_reviews")
        if self.min_reviews > self.window_reviews:
            raise ValueError("min_reviews must not exceed window_reviews")
        names = [s.name for s in self.slos]
        if len(set(names)) != len(names):
            raise ValueError("SLO names must be unique")
        return self


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
    node: NodeSettings = NodeSettings()
    service: ServiceSettings = ServiceSettings()
    audit: AuditSettings = AuditSettings()
    monitoring: MonitoringSettings = MonitoringSettings()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Priority: explicit arguments, then MEDSEG_* environment, then the TOML file named by MEDSEG_CONFIG."""
        path = os.environ.get(CONFIG_ENV)
        sources = [init_settings, env_settings]
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)

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
