"""What a training run is: its recipe (:class:`TrainConfig`, recorded in the manifest so that
``medseg train`` reproduces it), the label it learns, and which real cases train, choose and measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medseg.core.exceptions import InputError, TrainingError
from medseg.core.io.nifti import read_nifti
from medseg.core.labels import CodeSpec, LabelSpec
from medseg.core.volume import Volume
from medseg.models.manifest import ModelManifest

#: Real cases never used for training; every reported real-tumor number is on these.
STS_HOLDOUT = ("STS_002", "STS_006", "STS_012", "STS_019", "STS_024", "STS_029", "STS_033", "STS_038")
#: Real cases kept out of training to choose the recipe and the lesion filters on (``--sts-validation``),
#: so that nothing is chosen on the held-out ones. 2.x used all 20 others for training.
STS_VALIDATION = ("STS_004", "STS_015", "STS_026", "STS_035")
HOLDOUT_PHANTOM_SEED0 = 900_000
TUMOR_LABEL = LabelSpec(
    value=1,
    name="Tumor",
    category=CodeSpec(value="49755003", scheme="SCT", meaning="Morphologically Abnormal Structure"),
    type=CodeSpec(value="108369006", scheme="SCT", meaning="Neoplasm"),
    color_rgb=(255, 96, 0),
)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: Path
    name: str = Field(default="ct-tumor", pattern=ModelManifest.model_fields["name"].metadata[0].pattern)
    version: str = Field(default="1.0.0", pattern=ModelManifest.model_fields["version"].metadata[0].pattern)
    phantoms: int = Field(default=64, ge=0)
    phantom_seed0: int = 1000
    sts_dir: Path | None = None
    #: share of training patches drawn from real STS cases. 0 by default: mixing them in was
    #: measured to wreck the phantom task (9-minute runs, 10 held-out phantoms: phantoms only ->
    #: 4.2 false-positive lesions per study; 10 % real patches -> 23 per study, real Dice 0.21;
    #: 25 % over 28 minutes -> phantom Dice 0.01, real Dice 0.53). The cases are 5 cm crops
    #: around a sarcoma, so they teach "soft-tissue mass = tumor", which every phantom organ is.
    sts_fraction: float = Field(default=0.0, ge=0, le=1)
    #: real cases kept out of training for choosing on (STS_VALIDATION); () trains on all non-held-out ones
    sts_validation: tuple[str, ...] = ()
    #: the whole chest CT (medseg.training.real_ct): its training slab gives tumor-free patches,
    #: centred inside the body, ``hard_negative_share`` of them on voxels the network called tumor
    #: when last mined (every ``mine_every`` iterations); its measuring slab is only evaluated
    full_fov_dir: Path | None = None
    full_fov_fraction: float = Field(default=0.0, ge=0, le=1)
    hard_negative_share: float = Field(default=0.5, ge=0, le=1)
    mine_every: int = Field(default=500, ge=1)
    #: an upper bound: the time budget ends a default run first (2.1.0 ran 9862 iterations in 28 min)
    iterations: int = Field(default=20000, ge=1)
    minutes: float = Field(default=28.0, gt=0)
    batch_size: int = Field(default=8, ge=1)
    patch_zyx: tuple[int, int, int] = (32, 64, 64)
    #: sliding-window size at inference; None = the training patch. Larger windows are fewer and
    #: faster, but zero padding then sits elsewhere relative to the content: on the 512x512x200
    #: benchmark study 48x128x128 windows cost Dice (0.657 against 0.693), so the default is None.
    inference_roi_zyx: tuple[int, int, int] | None = None
    #: re-predict candidate lesions on 8 flips (medseg.core.pipeline.flip_check); the lesion filters are chosen with it
    flip_check: bool = True
    #: patch axes (z, y, x) mirrored at random in training. Left-right only: a 2.1.0 run mirrored
    #: along all three axes (so that every view of the flip check is one the network has seen)
    #: scored worse in the same 28 minutes, with the check (validation 0.608 against 0.676;
    #: held-out phantoms mean Dice 0.461 against 0.497, false positives per study 0.4 against 0.05)
    mirror_axes: tuple[int, ...] = (2,)
    #: in-plane rotation, scaling and gamma on a share of the patches (medseg.training.augment); off
    #: for every committed version, so that each reproduces as it was trained
    augment: bool = False
    spacing_xyz_mm: tuple[float, float, float] = (1.5, 1.5, 3.0)
    window_hu: tuple[float, float] = (-200.0, 300.0)
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    res_units: int = 1
    norm: str = "BATCH"
    learning_rate: float = 5e-3
    foreground_fraction: float = 0.5
    #: a tumor-centred patch puts the tumor voxel anywhere within +-this share of the patch from its
    #: centre. 0.25 taught a centre bias: the 28-minute model found a 25 mm liver tumor when it sat
    #: mid-window (mean probability 0.81) and lost it at the window edges of sliding-window inference (0.01).
    foreground_jitter: float = Field(default=0.5, ge=0, le=0.5)
    seed: int = 0
    holdout_phantoms: int = Field(default=20, ge=0)
    #: None: chosen with ``min_peak_probability`` on the validation phantoms
    min_lesion_ml: float | None = Field(default=None, ge=0)
    #: None: chosen after training on validation phantoms (seeds from VALIDATION_PHANTOM_SEED0)
    min_peak_probability: float | None = Field(default=None, ge=0, le=1)
    #: foreground probability threshold; None: chosen on real validation data (calibrate_on_real_ct),
    #: 0.5 (the argmax) for a phantom-calibrated model
    voxel_threshold: float | None = Field(default=None, gt=0, lt=1)
    #: the model version (<name>/<version>) whose voxel threshold and lesion filters, chosen on its
    #: validation cases, this run takes instead of choosing its own: a final model trained on the
    #: training and validation cases together (``--filters-from``), where nothing unseen is left to choose on
    filters_from: str | None = None
    #: 16 ranked the two best filter pairs of 2.0.0 only 0.0001 apart; 40 make the choice less noisy
    validation_phantoms: int = Field(default=40, ge=1)
    #: this invocation trains at most this long, then writes ``checkpoint.pt`` and stops; ``--resume``
    #: continues (``minutes`` is the budget of all chunks together). None: one run to the end
    chunk_minutes: float | None = Field(default=None, gt=0)
    #: a checkpoint is also written this often, so that a killed chunk loses at most this much
    checkpoint_every_minutes: float = Field(default=15.0, gt=0)

    @field_validator("mirror_axes")
    @classmethod
    def _patch_axes(cls, v):
        if not set(v) <= {0, 1, 2} or len(set(v)) != len(v):
            raise ValueError("mirror_axes are distinct patch axes 0 (z), 1 (y), 2 (x)")
        return v


#: TrainConfig fields a resumed chunk may set afresh; everything else comes from the checkpoint
PER_CHUNK = {"out", "chunk_minutes", "checkpoint_every_minutes"}


def sts_cases(sts_dir: Path, holdout: bool, validation: tuple[str, ...] = (),
              part: str = "train") -> list[tuple[str, Volume, Volume]]:
    """The held-out cases (``holdout``), else the training cases less ``validation`` (``part``
    "train") or the ``validation`` cases only (``part`` "validation")."""
    out = []
    for case in _case_folders(sts_dir):
        if holdout:
            wanted = case.name in STS_HOLDOUT
        elif case.name in STS_HOLDOUT:
            wanted = False
        else:
            wanted = (case.name in validation) == (part == "validation")
        if wanted:
            out.append(_sts_case(case))
    return out


def require_holdout(sts_dir: Path) -> None:
    """Refuse, before any work, a ``--sts-dir`` without the held-out cases: a model measured on none
    of them has no held-out number to report, and ``--write-metrics`` would replace the one it had."""
    if not any(case.name in STS_HOLDOUT for case in _case_folders(sts_dir)):
        raise InputError(f"--sts-dir {Path(sts_dir).name}: holds none of the held-out cases ({', '.join(STS_HOLDOUT)})",
                         code="sts.no_cases")


def require_validation(sts_dir: Path, names: Sequence[str]) -> None:
    """Refuse, before any work, an ``--sts-dir`` that lacks a validation case: the lesion filters are
    chosen on all of them."""
    missing = [name for name in names if not (Path(sts_dir) / name).is_dir()]
    if missing:
        raise TrainingError(f"{sts_dir}: validation case(s) {', '.join(missing)} not found",
                            code="train.no_validation_cases")


def _case_folders(sts_dir: Path) -> list[Path]:
    """The ``STS_*`` case folders of ``sts_dir``; a path that is no folder, or holds none, is refused."""
    root = Path(sts_dir)
    cases = sorted(p for p in root.glob("STS_*") if p.is_dir()) if root.is_dir() else []
    if not cases:
        raise InputError(f"--sts-dir {root.name}: not a folder of STS_* cases (CT_image.nii.gz, CT_mask.nii.gz)",
                         code="sts.no_cases")
    return cases


def named_sts_cases(sts_dir: Path, names: Sequence[str]) -> list[tuple[str, Volume, Volume]]:
    """The cases ``names`` (a model's own training or validation cases, from its manifest), each
    one that ``sts_dir`` holds: another copy of the collection may lack some."""
    return [_sts_case(Path(sts_dir) / name) for name in names if (Path(sts_dir) / name).is_dir()]


def _sts_case(case: Path) -> tuple[str, Volume, Volume]:
    return case.name, read_nifti(case / "CT_image.nii.gz"), read_nifti(case / "CT_mask.nii.gz")
