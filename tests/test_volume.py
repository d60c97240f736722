import itertools

import numpy as np
import pytest

from medseg.core.volume import (
    Reorientation,
    Volume,
    affine_from_nifti,
    affine_to_nifti,
    canonical_reorientation,
)


def _affine(perm, flips, spacing=(2.5, 0.8, 1.3), origin=(10.0, -20.0, 30.0)):
    """An axis-aligned LPS affine whose index axes point along permuted/flipped patient axes."""
    a = np.eye(4)
    a[:3, :3] = 0
    for axis, (patient_axis, flip) in enumerate(zip(perm, flips)):
        a[patient_axis, axis] = (-1 if flip else 1) * spacing[axis]
    a[:3, 3] = origin
    return a


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("flips", [(False, False, False), (True, False, True), (True, True, True)])
def test_canonical_reorientation_is_exact_and_reversible(perm, flips):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(5, 7, 9))
    affine = _affine(perm, flips)
    r = canonical_reorientation(affine)
    canonical = r.apply(array)
    new_affine = r.apply_affine(affine, array.shape)
    # canonical axes: k -> +z, r -> +y, c -> +x
    assert np.all(np.diag(new_affine[[2, 1, 0], :3]) > 0)
    # every voxel keeps its patient position
    for index in [(0, 0, 0), (4, 6, 8), (2, 3, 1)]:
        lps = affine[:3, :3] @ index + affine[:3, 3]
        new_index = np.linalg.solve(new_affine[:3, :3], lps - new_affine[:3, 3])
        assert np.allclose(new_index, np.round(new_index))
        assert canonical[tuple(np.round(new_index).astype(int))] == array[index]
    assert np.array_equal(r.invert(canonical), array)


def test_nifti_affine_round_trip():
    ras = np.array([[-0.9, 0, 0, 20], [0, -0.9, 0, 80], [0, 0, 3.3, -800], [0, 0, 0, 1]])
    lps = affine_from_nifti(ras)
    assert np.allclose(affine_to_nifti(lps), ras)
    # voxel (i, j, k) of the NIfTI is voxel (k, j, i) of the Volume, same patient point
    i, j, k = 3, 5, 7
    ras_point = ras @ [i, j, k, 1]
    lps_point = lps @ [k, j, i, 1]
    assert np.allclose(lps_point[:3], [-ras_point[0], -ras_point[1], ras_point[2]])


def test_volume_rejects_singular_affine_and_bad_source():
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="one header per slice"):
        Volume(np.zeros((2, 2, 2)), np.eye(4), source=(object(),))
    v = Volume(np.zeros((2, 3, 4)), np.diag([2.0, 0.5, 0.25, 1.0]))
    assert v.spacing == (2.0, 0.5, 0.25)
    assert v.voxel_volume_ml == pytest.approx(0.25 / 1000)


def test_reorientation_apply_affine_identity():
    r = Reorientation((0, 1, 2), (False, False, False))
    a = _affine((2, 1, 0), (False, False, False))
    assert np.allclose(r.apply_affine(a, (3, 4, 5)), a)
