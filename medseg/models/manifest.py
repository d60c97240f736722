"""The model manifest: a model version that describes itself (README "Models").

``models/<name>/<version>/manifest.json`` pins the weights' sha256, the
network (a whitelisted MONAI architecture and its arguments), the input
contract (spacing, intensity window, patch size), output labels with SNOMED CT
codes and display colours, post-processing, the training recipe and measured
metrics. A manifest is valid once constructed: errors name the
field and the rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.core.exceptions import ModelError
from medseg.core.labels import LabelSpec
from medseg.core.pipeline.spec import PipelineSpec

MANIFEST_FILE = "manifest.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: the architectures medseg's own pipeline may build from a manifest (a manifest is data, never an
#: import path); an imported MONAI bundle's network is built by MONAI from the bundle's config
MEDSEG_ARCHITECTURES = ("UNet", "BasicUNet", "SegResNet", "AttentionUnet")


class ArchitectureSpec(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    args: dict[str, Any]


class InputSpec(_Frozen):
    """What the network is given. For medseg's own pipeline every field is required; for an imported
    bundle (``inference.engine`` "monai-bundle") they describe its config and may be unknown (None)."""

    spacing_xyz_mm: tuple[float, float, float] | None
    window_hu: tuple[float, float] | None
    roi_size_zyx: tuple[int, int, int] | None
    #: canonical-SPL: medseg's axes; RAS etc.: what the bundle's Orientationd declares
    orientation: str = "canonical-SPL"

    @model_validator(mode="after")
    def _check(self):
        if self.spacing_xyz_mm is not None and any(s <= 0 for s in self.spacing_xyz_mm):
            raise ValueError("spacing_xyz_mm must be positive")
        if self.window_hu is not None and self.window_hu[0] >= self.window_hu[1]:
            raise ValueError("window_hu must be (low, high) with low < high")
        if self.roi_size_zyx is not None and any(r < 8 for r in self.roi_size_zyx):
            raise ValueError("roi_size_zyx must be at least 8 voxels per axis")
        return self


class InferenceSpec(_Frozen):
    #: medseg: medseg's pipeline (medseg.core.pipeline); monai-bundle: the bundle's own transforms and
    #: inferer, run by MONAI (medseg.models.bundle_pipeline) from the configs in ``bundle_configs``
    engine: Literal["medseg", "monai-bundle"] = "medseg"
    bundle_configs: str = ""
    #: config id -> value set over the bundle's config before anything is built, as
    #: ``python -m monai.bundle run --<id> <value>`` does (``medseg models import-bundle --override``)
    bundle_overrides: dict[str, Any] = Field(default_factory=dict)
    #: network_def arguments the installed MONAI has retired and that had no effect on the network
    #: (medseg.models.bundle_pipeline.RETIRED_ARGS), left out when the network is built
    bundle_dropped_args: tuple[str, ...] = ()
    #: further files of the bundle's ``models/`` the config loads (e.g. DiNTS' architecture code),
    #: path inside the version -> sha256, verified before the version is loaded like the weights
    bundle_files: dict[str, str] = Field(default_factory=dict)
    overlap: float = Field(default=0.25, ge=0, lt=1)
    sw_batch_size: int = Field(default=2, ge=1)
    blend_mode: Literal["gaussian", "constant"] = "gaussian"
    #: roi used at inference (bigger than the training patch is fine: the network is fully convolutional)
    roi_size_zyx: tuple[int, int, int] | None = None
    #: re-predict each candidate lesion on the 8 axis flips of its window and average (medseg.core.pipeline.flip_check)
    flip_check: bool = False
    #: the check spends at most this multiple of the first pass's windows (largest, surest candidates
    #: first). None: unbounded, as the versions made before the bound were measured and referenced;
    #: ``medseg train`` writes 1.0
    flip_check_budget: float | None = Field(default=None, gt=0, le=8)

    @field_validator("bundle_files")
    @classmethod
    def _inside(cls, v):
        for path in v:
            if path.startswith("/") or ".." in path.split("/") or not re.fullmatch(r"[0-9a-f]{64}", v[path]):
                raise ValueError("must map paths inside the version to 64 lowercase hex digits")
        return v


class PostprocessSpec(_Frozen):
    min_lesion_ml: float = Field(default=0.05, ge=0)
    #: drop components whose most confident voxel stays below this (suppresses faint noise blobs)
    min_peak_probability: float = Field(default=0.0, ge=0, le=1)
    #: foreground only inside the patient's body mask (medseg.core.pipeline.segment.body_mask);
    #: off for the versions made before it, so that their references and metrics stand
    body_mask: bool = False
    #: a binary model's foreground probability threshold (0.5 = argmax; chosen on validation data
    #: by medseg.training.calibration for real-CT models)
    voxel_threshold: float = Field(default=0.5, gt=0, lt=1)


class WeightsSpec(_Frozen):
    file: str
    sha256: str
    format: Literal["state_dict"] = "state_dict"

    @field_validator("file")
    @classmethod
    def _plain_name(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v) or v.startswith("."):
            raise ValueError("must be a plain file name inside the model folder")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v):
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("must be 64 lowercase hex digits")
        return v


class ReferenceSpec(_Frozen):
    """The version's own result on a fixed reference, which a promotion must reproduce (the gate):
    a phantom regenerated from its seed, or (``image_file``) a real CT kept in the model folder."""

    phantom_seed: int
    shape_krc: tuple[int, int, int]
    spacing_krc_mm: tuple[float, float, float]
    n_tumors: int = Field(ge=0)
    mask_file: str  # uint8 NIfTI in the model folder
    mask_sha256: str
    min_dice: float = Field(default=0.99, gt=0, le=1)
    #: how the reference agrees with the truth when it was recorded (lesion models: Dice and
    #: tumors found; None for a structure model, whose truth the phantom does not hold)
    truth_dice: float | None = None
    truth_lesions_found: str | None = None
    #: a real reference case instead of the phantom (a model trained on real CT need not find
    #: synthetic tumors): its image and expert mask, NIfTI files in the model folder
    image_file: str | None = None
    image_sha256: str | None = None
    truth_file: str | None = None
    #: where the case comes from (its licence and attribution)
    source: str | None = None

    @field_validator("mask_file", "image_file", "truth_file")
    @classmethod
    def _plain_name(cls, v):
        return v if v is None else WeightsSpec._plain_name(v)


class ProvenanceSpec(_Frozen):
    """Where an imported model comes from, as its authors published it (a MONAI bundle's
    ``metadata.json`` and ``LICENSE``); shown by ``medseg models show``."""

    source: str = Field(min_length=1, max_length=64)  # e.g. "MONAI bundle"
    name: str = ""
    version: str = ""
    task: str = ""
    authors: str = ""
    copyright: str = ""
    license: str = ""
    data_source: str = ""
    intended_use: str = ""
    references: tuple[str, ...] = ()
    #: the metrics the authors report (``eval_metrics``), as published: not measured here
    published_metrics: dict[str, Any] = Field(default_factory=dict)
    #: output channel -> the authors' label name
    label_names: dict[int, str] = Field(default_factory=dict)
    #: label names no SNOMED CT code was found for (coded as the generic "Anatomical Structure")
    uncoded_labels: tuple[str, ...] = ()


class TaskSpec(_Frozen):
    """What the version segments, in the words its outputs use (SEG titles, the CLI summary,
    ``result.json``): ``title`` "tumor", "spleen", "multi-organ"; each connected component of a
    label is a ``finding``: a "lesion" for tumor models, a "structure" for anatomy."""

    title: str = Field(default="tumor", min_length=1, max_length=24)
    finding: Literal["lesion", "structure"] = "lesion"


class ModelManifest(_Frozen):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([.-][A-Za-z0-9.]+)?$")
    description: str
    intended_use: str
    architecture: ArchitectureSpec
    input: InputSpec
    labels: tuple[LabelSpec, ...] = Field(min_length=1)
    task: TaskSpec = TaskSpec()
    inference: InferenceSpec = InferenceSpec()
    postprocess: PostprocessSpec = PostprocessSpec()
    weights: WeightsSpec
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    reference: ReferenceSpec | None = None
    provenance: ProvenanceSpec | None = None

    @model_validator(mode="after")
    def _engine(self):
        if self.inference.engine == "medseg":
            if self.architecture.name not in MEDSEG_ARCHITECTURES:
                raise ValueError(f"architecture.name must be one of {list(MEDSEG_ARCHITECTURES)}")
            i = self.input
            if i.spacing_xyz_mm is None or i.window_hu is None or i.roi_size_zyx is None or \
                    i.orientation != "canonical-SPL":
                raise ValueError("input needs spacing_xyz_mm, window_hu, roi_size_zyx and canonical-SPL axes")
        elif not self.inference.bundle_configs or "/.." in f"/{self.inference.bundle_configs}":
            raise ValueError("inference.bundle_configs must name the bundle's configs folder in the version")
        return self

    @field_validator("labels")
    @classmethod
    def _unique(cls, v):
        values = [label.value for label in v]
        if len(set(values)) != len(values):
            raise ValueError("label values must be unique")
        if sorted(values) != list(range(1, len(values) + 1)):
            raise ValueError("label values must be 1..N (output channel k is label k)")
        return v

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def manifest_sha256(self) -> str:
        """The version's identity beside its weights' sha256: a hash of everything in the manifest
        that decides what the version does (architecture, input, labels, task, inference,
        post-processing, weights, training recipe), less what is recorded about it afterwards
        (``metrics``, the gate ``reference``). Same weights with another manifest: another hash."""
        body = self.model_dump(mode="json", exclude={"metrics", "reference"})
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def pipeline_spec(self) -> PipelineSpec:
        """medseg's pipeline for this version; an imported bundle has none (it runs its own)."""
        if self.inference.engine != "medseg":
            raise ModelError(f"{self.ref}: an imported MONAI bundle runs its own pipeline, not medseg's "
                             "(medseg evaluate measures it on the site's own cases, --cases, not on medseg's held-out sets)", code="model.engine")
        sx, sy, sz = self.input.spacing_xyz_mm
        return PipelineSpec(
            spacing_zyx=(sz, sy, sx),
            window_hu=self.input.window_hu,
            roi_size=self.inference.roi_size_zyx or self.input.roi_size_zyx,
            labels=tuple(label.value for label in self.labels),
            overlap=self.inference.overlap,
            sw_batch_size=self.inference.sw_batch_size,
            blend_mode=self.inference.blend_mode,
            flip_check=self.inference.flip_check,
            flip_check_budget=self.inference.flip_check_budget,
            min_lesion_ml=self.postprocess.min_lesion_ml,
            min_peak_probability=self.postprocess.min_peak_probability,
            body_mask=self.postprocess.body_mask,
            voxel_threshold=self.postprocess.voxel_threshold,
        )

    @classmethod
    def load(cls, model_dir: Path) -> "ModelManifest":
        path = Path(model_dir) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path}: manifest not found", code="model.not_found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: unreadable manifest ({exc})") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"{path}: invalid manifest: {where}: {first['msg']}") from None

    def dump(self, model_dir: Path) -> None:
        (Path(model_dir) / MANIFEST_FILE).write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
