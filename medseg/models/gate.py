"""The promotion gate: a version may become active only if it loads, passes its sha256 check,
and reproduces its own reference result on a fixed phantom (Dice >= the manifest's min_dice).

A model trained on real CT need not find synthetic tumors (ct-tumor 3.0.0 saw no phantom in
training), so its reference can be a **real case** instead (``make_reference(..., case=DIR)``,
``medseg models reference V --case DIR``, DIR holding ``CT_image.nii.gz`` and ``CT_mask.nii.gz``):
the image and its expert mask are copied into the model folder, pinned by sha256, and the same
truth rule applies against the expert mask.

``make_reference`` records that reference once per version (``medseg models reference V``):
the fixed phantom is regenerated from its seed, so only the mask is stored. A lesion model's
reference must agree with the phantom's truth — find at least one of its tumors — or it is
refused (``registry.reference_disagrees``): a version that finds nothing would otherwise record
an empty reference and "reproduce" it at every promotion. For an imported MONAI bundle the
agreement is recorded but not enforced: the synthetic phantom is not its domain (a hospital's
validated liver-lesion model may find nothing on it), and its reference checks reproduction only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.core.exceptions import MedsegError, RegistryError
from medseg.models.manifest import ModelManifest, ReferenceSpec

REFERENCE_SEED = 4242
REFERENCE_SHAPE = (32, 96, 96)
REFERENCE_SPACING = (2.5, 2.0, 2.0)
REFERENCE_TUMORS = 3
REFERENCE_FILE = "reference_mask.nii.gz"
CASE_IMAGE, CASE_TRUTH = "reference_image.nii.gz", "reference_truth.nii.gz"


@dataclass(frozen=True)
class GateResult:
    ok: bool
    reason: str
    dice: float | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _phantom(ref: ReferenceSpec | None = None):
    from medseg.core.phantom import generate_phantom

    if ref is None:
        return generate_phantom(REFERENCE_SEED, shape=REFERENCE_SHAPE, spacing=REFERENCE_SPACING, n_tumors=REFERENCE_TUMORS)
    return generate_phantom(ref.phantom_seed, shape=ref.shape_krc, spacing=ref.spacing_krc_mm, n_tumors=ref.n_tumors)


def _segment(model_dir: Path, ref: ReferenceSpec | None = None, image=None) -> np.ndarray:
    from medseg.models.store import load_model

    return load_model(model_dir).segment(image if image is not None else _phantom(ref).image).mask.array


def _case(model_dir: Path, ref: ReferenceSpec):
    """The reference's real image, refused when it is missing or altered."""
    from medseg.core.io.nifti import read_nifti

    path = model_dir / ref.image_file
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != ref.image_sha256:
        raise RegistryError(f"reference image {ref.image_file} is missing or altered", code="registry.reference_altered")
    return read_nifti(path)


def make_reference(model_dir: Path, case: Path | None = None, source: str | None = None) -> ReferenceSpec:
    """Run the version on the fixed phantom (or the real ``case``) and record the mask as its
    reference result (refused, nothing written, when a lesion model's mask finds none of the
    truth's tumors)."""
    import shutil

    from medseg.core.io.nifti import read_nifti, write_nifti
    from medseg.core.scoring import evaluate_case

    model_dir = Path(model_dir)
    manifest = ModelManifest.load(model_dir)
    if case is not None:
        for name in ("CT_image.nii.gz", "CT_mask.nii.gz"):
            if not (Path(case) / name).is_file():
                raise RegistryError(f"reference case {Path(case).name}: {name} missing", code="registry.reference_case")
        image, truth = read_nifti(Path(case) / "CT_image.nii.gz"), read_nifti(Path(case) / "CT_mask.nii.gz")
        truth = truth.with_array((truth.array > 0).astype(np.uint8))
        mask = _segment(model_dir, image=image)
        where = f"reference case {Path(case).name}"
    else:
        phantom = _phantom()
        image, truth = phantom.image, phantom.truth
        mask = _segment(model_dir)
        where = "reference phantom"
    truth_dice = found = None
    if manifest.task.finding == "lesion":
        case_score = evaluate_case(mask, truth.array, image.voxel_volume_ml)
        hits = sum(hit for _, hit in case_score.reference_lesions)
        truth_dice, found = round(case_score.dice, 4), f"{hits}/{len(case_score.reference_lesions)}"
        if case_score.reference_lesions and hits == 0 and manifest.inference.engine == "medseg":
            raise RegistryError(
                f"{manifest.name}/{manifest.version}: its result on the {where} disagrees with the truth "
                f"(0 of {len(case_score.reference_lesions)} tumors found, {int((mask > 0).sum())} voxels called, "
                f"Dice {case_score.dice:.4f}); not recorded as a reference", code="registry.reference_disagrees")
    files = {}
    if case is not None:
        shutil.copyfile(Path(case) / "CT_image.nii.gz", model_dir / CASE_IMAGE)
        write_nifti(truth, model_dir / CASE_TRUTH, dtype=np.uint8)
        files = dict(image_file=CASE_IMAGE, truth_file=CASE_TRUTH, source=source,
                     image_sha256=hashlib.sha256((model_dir / CASE_IMAGE).read_bytes()).hexdigest())
    write_nifti(truth.with_array(mask.astype(np.uint8)), model_dir / REFERENCE_FILE, dtype=np.uint8)
    ref = ReferenceSpec(phantom_seed=REFERENCE_SEED, shape_krc=REFERENCE_SHAPE, spacing_krc_mm=REFERENCE_SPACING,
                        n_tumors=REFERENCE_TUMORS, mask_file=REFERENCE_FILE,
                        mask_sha256=hashlib.sha256((model_dir / REFERENCE_FILE).read_bytes()).hexdigest(),
                        truth_dice=truth_dice, truth_lesions_found=found, **files)
    manifest.model_copy(update={"reference": ref}).dump(model_dir)
    return ref


def check(model_dir: Path) -> GateResult:
    """Never raises for a bad version: the reason says why it may not become active."""
    from medseg.core.scoring import dice
    from medseg.core.io.nifti import read_nifti

    model_dir = Path(model_dir)
    try:
        manifest = ModelManifest.load(model_dir)
        if manifest.reference is None:
            return GateResult(False, "the manifest records no reference result (run `medseg models reference`)")
        ref = manifest.reference
        stored = model_dir / ref.mask_file
        if not stored.is_file() or hashlib.sha256(stored.read_bytes()).hexdigest() != ref.mask_sha256:
            return GateResult(False, f"reference mask {ref.mask_file} is missing or altered")
        image = _case(model_dir, ref) if ref.image_file else None
        mask = _segment(model_dir, ref, image)  # loads: sha256 check before deserializing
        score = dice(mask, read_nifti(stored).array)
    except MedsegError as exc:
        return GateResult(False, exc.message)
    except Exception as exc:  # noqa: BLE001 - any failure of the candidate refuses it
        return GateResult(False, f"the version fails on the reference phantom ({type(exc).__name__})")
    if score < ref.min_dice:
        return GateResult(False, f"reference result not reproduced: Dice {score:.4f} < {ref.min_dice}", score)
    return GateResult(True, "loads, sha256 matches, reference reproduced", score)
