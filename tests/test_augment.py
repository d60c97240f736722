"""Training-patch augmentation (medseg.training.augment): the label follows the image through every
rotation and scaling, the patches change, and the stream is the run's own."""

import numpy as np
import pytest
import torch

from medseg.training.augment import AFFINE_SHARE, PatchAugment
from medseg.training.train import _Case, _patch

PATCH = (16, 48, 48)


@pytest.fixture(scope="module")
def ellipsoid_case() -> _Case:
    """An ellipsoid elongated along y, whose image is its own label: wherever the label goes, the
    image must go too."""
    z, y, x = np.mgrid[:40, :120, :120]
    inside = ((z - 20) / 6) ** 2 + ((y - 60) / 25) ** 2 + ((x - 60) / 12) ** 2 <= 1
    return _Case(torch.from_numpy(inside.astype(np.float32)), torch.from_numpy(inside.astype(np.uint8)),
                 [np.argwhere(inside)])


def test_the_label_follows_the_image_through_rotation_and_scaling(ellipsoid_case):
    augment, rng = PatchAugment(PATCH), np.random.default_rng(3)
    turned = 0
    for _ in range(30):
        image, label = _patch(ellipsoid_case, PATCH, rng, 1.0, 0.25, (2,), augment=augment)
        assert image.shape == label.shape == PATCH and label.dtype == torch.uint8
        assert set(label.unique().tolist()) <= {0, 1}
        seen, truth = image > 0.5, label > 0
        # bilinear image and nearest-neighbour label differ only on the boundary (misaligned: ~0.5)
        assert 2 * (seen & truth).sum() / (seen.sum() + truth.sum()) > 0.93
        # the ellipsoid's in-plane axes, from the label's second moments: turned off y and x by the rotation
        ys, xs = np.nonzero(label.numpy().any(0))
        turned += abs(np.corrcoef(ys, xs)[0, 1]) > 0.05
    assert 5 <= turned <= 25  # about AFFINE_SHARE of the patches rotated, the rest read as they are
    assert 0 < AFFINE_SHARE < 1


def test_an_augmented_stream_is_the_runs_own(ellipsoid_case):
    """The transforms draw from the run's generator (and the noise from torch's, seeded by the run):
    the same seeds give the same patches, as a resumed run needs, and augmentation changes them."""
    def stream(augment, seed=11):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        return [_patch(ellipsoid_case, PATCH, rng, 0.5, 0.5, (2,), augment=augment) for _ in range(6)]

    first, again = stream(PatchAugment(PATCH)), stream(PatchAugment(PATCH))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(first, stream(None)))
