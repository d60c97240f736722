"""Spatial and intensity augmentation of training patches, with MONAI's transforms.

ct-tumor 3.0.0 outlines its 16 training sarcomas at mean Dice 0.92 and unseen ones at 0.41-0.61
(``real_sts_seen`` in its manifest): it learned its cases more than the task. Its patches were
only mirrored left-right and jittered in contrast by +-5 %. ``TrainConfig.augment`` adds what
makes few cases look like more:

* an in-plane rotation (about the canonical z axis, where the model grid's voxels are square) of
  up to +-15 degrees and a scaling of each axis by 0.85-1.15 (``monai.transforms.RandAffined``,
  image bilinear, label nearest), on a patch read larger (``REACH``) around the same centre so
  that the rotated and shrunk window holds image, not padding;
* a gamma change of the windowed intensities, 0.7-1.5 (``monai.transforms.RandAdjustContrastd``).

Each applies to a share of the patches (``AFFINE_SHARE``, ``GAMMA_SHARE``); the rest are read as
before, uninterpolated, as inference sees them. The transforms draw from a MONAI random state
seeded from the training run's own generator, so a resumed run continues the same stream, and a
recipe without ``augment`` draws nothing more (3.0.0 reproduces as it was).

Measured (README, "Measured, not shipped: augmentation"): 3.0.0's recipe with it, after 3815
iterations, scored validation Dice 0.393 against 0.420 without (3772 iterations), training cases
0.683 against 0.698; it costs 12 % of the iterations (``bench/train_step.py``). Its effect over a
whole budget is not measured, so no committed version uses it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: how much larger than the patch the region read for an affine patch is, per axis (z, y, x):
#: a 15-degree rotation needs cos + sin = 1.22 in-plane, and shrinking by 0.85 another 1/0.85
REACH = (1.2, 1.45, 1.45)
AFFINE_SHARE = 0.5
GAMMA_SHARE = 0.3


class PatchAugment:
    def __init__(self, patch_zyx: tuple[int, int, int]):
        from monai.transforms import RandAdjustContrastd, RandAffined

        self.patch = tuple(int(p) for p in patch_zyx)
        self.region = tuple(int(math.ceil(p * r)) for p, r in zip(self.patch, REACH))
        self.affine = RandAffined(keys=("image", "label"), prob=1.0, rotate_range=(math.radians(15), 0.0, 0.0),
                                  scale_range=(0.15, 0.15, 0.15), spatial_size=self.patch,
                                  mode=("bilinear", "nearest"), padding_mode="border")
        self.gamma = RandAdjustContrastd(keys="image", prob=1.0, gamma=(0.7, 1.5))

    def wants_affine(self, rng: np.random.Generator) -> bool:
        return rng.random() < AFFINE_SHARE

    def affine_patch(self, image: torch.Tensor, label: torch.Tensor,
                     rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The patch-sized centre of ``image``/``label`` (a ``region``-sized read), rotated and scaled."""
        self.affine.set_random_state(seed=int(rng.integers(2**31 - 1)))
        out = self.affine({"image": image[None], "label": label[None].float()})
        return _plain(out["image"][0]).float(), _plain(out["label"][0]).round().to(torch.uint8)

    def intensity(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if rng.random() >= GAMMA_SHARE:
            return image
        self.gamma.set_random_state(seed=int(rng.integers(2**31 - 1)))
        return _plain(self.gamma({"image": image[None].clamp(0, 1)})["image"][0]).float()


def _plain(tensor) -> torch.Tensor:
    """A MONAI ``MetaTensor`` as the plain tensor the training batch is stacked from."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)
