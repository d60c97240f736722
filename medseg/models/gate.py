"""The promotion gate: a version may become active only if it loads, passes its sha256 check,
and reproduces its own reference result on a fixed phantom (Dice >= the manifest's min_dice).

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


def _segment(model_dir: Path, ref: ReferenceSpec | None = None) -> np.ndarray:
    from medseg.models.store import load_model

    return load_model(model_dir).segment(_phantom(ref).image).mask.array


def make_reference(model_dir: Path) -> ReferenceSpec:
    """Run the version on the fixed phantom and record the mask as its reference result
    (refused, nothing written, when a lesion model's mask finds none of the phantom's tumors)."""
    from medseg.core.io.nifti import write_nifti
    from medseg.core.scoring import evaluate_case

    model_dir = Path(model_dir)
    manifest = ModelManifest.load(model_dir)
    phantom = _phantom()
    mask = _segment(model_dir)
    truth_dice = found = None
    if manifest.task.finding == "lesion":
        case = evaluate_case(mask, phantom.truth.array, phantom.image.voxel_volume_ml)
        hits = sum(hit for _, hit in case.reference_lesions)
        truth_dice, found = round(case.dice, 4), f"{hits}/{len(case.reference_lesions)}"
        if case.reference_lesions and hits == 0 and manifest.inference.engine == "medseg":
            raise RegistryError(
                f"{manifest.name}/{manifest.version}: its result on the reference phantom disagrees with the phantom's "
                f"truth (0 of {len(case.reference_lesions)} tumors found, {int((mask > 0).sum())} voxels called, "
                f"Dice {case.dice:.4f}); not recorded as a reference", code="registry.reference_disagrees")
    write_nifti(phantom.truth.with_array(mask.astype(np.uint8)), model_dir / REFERENCE_FILE, dtype=np.uint8)
    ref = ReferenceSpec(phantom_seed=REFERENCE_SEED, shape_krc=REFERENCE_SHAPE, spacing_krc_mm=REFERENCE_SPACING,
                        n_tumors=REFERENCE_TUMORS, mask_file=REFERENCE_FILE,
                        mask_sha256=hashlib.sha256((model_dir / REFERENCE_FILE).read_bytes()).hexdigest(),
                        truth_dice=truth_dice, truth_lesions_found=found)
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
        mask = _segment(model_dir, ref)  # loads: sha256 check before deserializing
        score = dice(mask, read_nifti(stored).array)
    except MedsegError as exc:
        return GateResult(False, exc.message)
    except Exception as exc:  # noqa: BLE001 - any failure of the candidate refuses it
        return GateResult(False, f"the version fails on the reference phantom ({type(exc).__name__})")
    if score < ref.min_dice:
        return GateResult(False, f"reference result not reproduced: Dice {score:.4f} < {ref.min_dice}", score)
    return GateResult(True, "loads, sha256 matches, reference reproduced", score)
