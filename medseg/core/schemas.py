"""The ``result.json`` contract written by every segmentation run.

Holds UIDs and measurements, never patient names or IDs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Out):
    name: str
    version: str
    sha256: str


class LesionOut(_Out):
    label: int
    label_name: str
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    extent_mm: tuple[float, float, float]
    mean_probability: float
    mean_entropy: float = 0.0


class InputInfo(_Out):
    kind: str  # dicom | nifti
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    shape_krc: tuple[int, int, int]
    spacing_krc_mm: tuple[float, float, float]
    transfer_syntaxes: list[str] = []
    series: list[dict] = []  # one decision per series found, with the reason
    scan: dict = {}


class SegOut(_Out):
    sop_instance_uid: str
    series_instance_uid: str
    frames: int


class SegmentationResult(_Out):
    medseg_version: str
    created_utc: str
    input: InputInfo
    model: ModelRef
    device: str
    degraded: bool = False
    degraded_reason: str | None = None
    lesion_count: int
    lesions: list[LesionOut]
    total_volume_ml: float
    outputs: dict[str, str]
    seg: SegOut | None = None
    timings_s: dict[str, float]
    #: label-free numbers for drift monitoring (medseg.core.features.study_features); no PHI
    features: dict = {}
