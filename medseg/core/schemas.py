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
    #: ModelManifest.manifest_sha256: the manifest's part of the version's identity
    manifest_sha256: str = ""


class LesionOut(_Out):
    label: int
    label_name: str
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    extent_mm: tuple[float, float, float]
    mean_probability: float
    mean_entropy: float = 0.0


class TaskOut(_Out):
    """What the model segments: ``title`` ("tumor", "spleen", "multi-structure") and what one
    connected component in ``lesions`` is (``finding``: "lesion", or "structure" for anatomy)."""

    title: str = "tumor"
    finding: str = "lesion"


class SegmentOut(_Out):
    """One label of the model, as the SEG's segment of that number: its total and its components."""

    label: int
    name: str
    #: the segmented property type (SNOMED CT), e.g. ("SCT", "78961009", "Spleen")
    code: tuple[str, str, str]
    volume_ml: float
    components: int


class InputInfo(_Out):
    kind: str  # dicom | nifti
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    shape_krc: tuple[int, int, int]
    spacing_krc_mm: tuple[float, float, float]
    transfer_syntaxes: list[str] = []
    series: list[dict] = []  # one decision per series found, with the reason
    scan: dict = {}


class Replaces(_Out):
    """The SEG series a result supersedes (more instances of its series arrived after it was made)."""

    seg_series_uid: str
    revision: int  # the series revision the replaced SEG was made from


class SegOut(_Out):
    sop_instance_uid: str
    series_instance_uid: str
    frames: int
    #: set when this SEG supersedes an earlier one of the same source series
    replaces: Replaces | None = None


class SegmentationResult(_Out):
    medseg_version: str
    created_utc: str
    input: InputInfo
    model: ModelRef
    device: str
    degraded: bool = False
    degraded_reason: str | None = None
    task: TaskOut = TaskOut()
    #: one entry per model label (SEG segment), found or not
    segments: list[SegmentOut] = []
    #: connected components of every label, largest first (``task.finding`` says what they are);
    #: the names are kept for the clients of this contract
    lesion_count: int
    lesions: list[LesionOut]
    total_volume_ml: float
    outputs: dict[str, str]
    seg: SegOut | None = None
    timings_s: dict[str, float]
    #: label-free numbers for drift monitoring (medseg.core.features.study_features); no PHI
    features: dict = {}
