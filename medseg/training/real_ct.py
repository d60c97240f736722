"""Real CT for training and measuring: the whole chest CT split by slab, negatives inside the body,
hard negatives mined on it.

``../shared/data/full-fov-ct/LIDC-IDRI-0314`` is one whole chest CT (512 x 512 x 275, 1 mm
slices) with one lung nodule, marked by 4 readers on slices 151-168. It is split along z:

* **training slab**: slices 0-119 (the inferior 120 mm: lower lungs, liver dome, upper abdomen,
  table, air). Tumor-free, 31 mm and more from the nodule. Its voxels are negatives: patches
  centred inside the body, and hard negatives where the network being trained calls tumor.
* **measuring slab**: slices 120-214 (95 mm of mid chest, the nodule included). Never trained on
  nor chosen on: false-positive lesions are counted here, and whether the nodule is found.
* **validation slab**: slices 215-274 (the superior 60 mm: lung apices, shoulders, base of the
  neck). Not trained on; the lesion filters are chosen on it (``calibrate_on_real_ct``).

The first training chunk of ct-tumor 3.0.0 ran when slices 120-274 were all the measuring slab;
none of them was ever trained on, so the split of that part does not touch training.

Attribution: LIDC-IDRI (TCIA, CC BY 3.0; Armato et al. 2011, DOI 10.1118/1.3528204), see the
data's README.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medseg.core.exceptions import InputError
from medseg.core.io.nifti import read_nifti
from medseg.core.pipeline.segment import preprocess
from medseg.core.pipeline.spec import PipelineSpec
from medseg.core.volume import Volume

FULL_FOV_CASE = "LIDC-IDRI-0314"
TRAIN_SLICES = (0, 120)
MEASURE_SLICES = (120, 215)
VALIDATION_SLICES = (215, 275)
#: the readers' consensus (LIDC convention: at least 2 of 4)
NODULE_READERS = 2
LIDC_SOURCE = "TCIA LIDC-IDRI, CC BY 3.0"
LIDC_ATTRIBUTION = ("Armato SG III et al., Medical Physics 38(2):915-931 (2011), DOI 10.1118/1.3528204; "
                    "Data from LIDC-IDRI, TCIA (2015), DOI 10.7937/K9/TCIA.2015.LO9QL9SX; "
                    "converted from NIfTI to DICOM by medseg. Not a clinical image of this site.")


def slab(volume: Volume, slices: tuple[int, int]) -> Volume:
    """Slices ``[start, stop)`` of a NIfTI-read volume (index 0 is the NIfTI z axis), same geometry."""
    start, stop = slices
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ np.array([start, 0.0, 0.0]) + volume.affine[:3, 3]
    return Volume(np.ascontiguousarray(volume.array[start:stop]), affine)


def require_full_fov(root: Path) -> None:
    """Refuse, before any work, a ``--full-fov-dir`` that does not hold the whole chest CT."""
    folder = Path(root) / FULL_FOV_CASE
    missing = [name for name in ("CT_image.nii.gz", "nodule_readers.nii.gz") if not (folder / name).is_file()]
    if missing:
        raise InputError(f"--full-fov-dir {Path(root).name}: {FULL_FOV_CASE}/{' and '.join(missing)} not found "
                         f"(the whole chest CT of ../shared/data/full-fov-ct)", code="full_fov.not_found")


def whole_ct(root: Path) -> tuple[Volume, Volume]:
    """(CT, nodule mask of >= 2 readers), all 275 slices."""
    folder = Path(root) / FULL_FOV_CASE
    ct, readers = read_nifti(folder / "CT_image.nii.gz"), read_nifti(folder / "nodule_readers.nii.gz")
    return ct, readers.with_array((readers.array >= NODULE_READERS).astype(np.uint8))


def full_fov(root: Path, part: str) -> tuple[Volume, Volume]:
    """(CT, nodule mask of >= 2 readers) of the training, measuring or validation slab."""
    ct, nodule = whole_ct(root)
    slices = {"train": TRAIN_SLICES, "measure": MEASURE_SLICES, "validation": VALIDATION_SLICES}[part]
    image, truth = slab(ct, slices), slab(nodule, slices)
    if part != "measure" and truth.array.any():
        raise ValueError(f"the {'training' if part == 'train' else part} slab of the whole CT must not hold the nodule")
    return image, truth


@dataclass
class NegativeVolume:
    """A tumor-free volume on the model grid: where patches may be centred (inside the body) and
    where the network was last seen calling tumor (hard negatives)."""

    image: torch.Tensor  # (D, H, W) windowed
    body_voxels: np.ndarray  # (N, 3) model-grid indices inside the body mask
    hard: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), int))

    @classmethod
    def from_volume(cls, volume: Volume, spec: PipelineSpec) -> "NegativeVolume":
        prep = preprocess(volume, dataclasses.replace(spec, body_mask=True))
        body = prep.body[0, 0].numpy() > 0
        return cls(prep.tensor[0, 0].clone(), np.argwhere(body))

    def centre(self, rng: np.random.Generator, hard_share: float) -> np.ndarray:
        pool = self.hard if len(self.hard) and rng.random() < hard_share else self.body_voxels
        return pool[int(rng.integers(len(pool)))]

    def mine(self, network: torch.nn.Module, spec: PipelineSpec, limit: int = 2000,
             rng: np.random.Generator | None = None) -> int:
        """Infer the whole volume with ``network`` (eval mode) and keep up to ``limit`` voxels it
        calls tumor inside the body as hard-negative centres. Returns how many it called.

        Voxels from earlier minings stay in the pool (the newest first, the oldest dropped past
        ``limit``). Replacing the pool at each mining (chunk 1 of ct-tumor 3.0.0, iterations
        1-3772) let the network swing: a mining that found nothing emptied the pool, the next
        500 iterations saw no hard negatives and the next mining found 65 000 voxels again
        (0, 65921, 65808, 0, 556, 16, 246105 over seven minings).
        """
        from medseg.core.pipeline.segment import infer

        was_training = network.training
        network.eval()
        try:
            plain = dataclasses.replace(spec, flip_check=False)
            foreground = infer(self.image[None, None], network, plain)[0, 1].numpy() > 0.5
        finally:
            network.train(was_training)
        inside = np.zeros(foreground.shape, bool)
        inside[tuple(self.body_voxels.T)] = True
        called = np.argwhere(foreground & inside)
        rng = rng or np.random.default_rng(0)
        if len(called) > limit:
            called = called[rng.choice(len(called), limit, replace=False)]
        older = self.hard[:limit - len(called)]
        self.hard = np.concatenate([called, older]).astype(int) if len(older) else called
        return int((foreground & inside).sum())
