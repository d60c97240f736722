"""Flip check (medseg.core.pipeline.flip_check) with stub predictors: what it keeps, what it removes, what it costs."""

import numpy as np
import torch

from medseg.core.pipeline.flip_check import FLIPS, candidate_boxes, context_box
from medseg.core.pipeline.segment import infer
from medseg.core.pipeline.spec import PipelineSpec

ROI = (8, 16, 16)


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """Flip-equivariant 'model': foreground where the windowed intensity is above 0.5."""
    return torch.cat([0.5 - x, x - 0.5], dim=1) * 40


def with_artefact(x: torch.Tensor) -> torch.Tensor:
    """``pointwise`` plus a false alarm at a fixed spot of every window (like a network that fires on
    a window corner): it moves with the window, not with the image, so flipped views disagree on it."""
    logits = pointwise(x)
    logits[:, 1, 1:3, 1:3, 1:3] = 20.0
    logits[:, 0, 1:3, 1:3, 1:3] = -20.0
    return logits


def _volume(shape=(20, 40, 40)):
    x = torch.zeros((1, 1, *shape))
    x[0, 0, 8:12, 18:24, 18:24] = 1.0  # the 'lesion', in the middle
    return x


def _spec(**kw) -> PipelineSpec:
    defaults = dict(spacing_zyx=(1.0, 1.0, 1.0), window_hu=(0.0, 1.0), roi_size=ROI, overlap=0.0, blend_mode="constant")
    return PipelineSpec(**{**defaults, **kw})


def test_a_flip_equivariant_model_is_left_as_it_was():
    x = _volume()
    plain = infer(x, pointwise, _spec())
    checked = infer(x, pointwise, _spec(flip_check=True))
    assert (plain[0].argmax(0) > 0).sum() == 4 * 6 * 6
    assert torch.allclose(plain, checked, atol=1e-6)


def test_a_false_alarm_that_moves_with_the_window_is_removed_and_the_lesion_kept():
    x = _volume()
    plain = infer(x, with_artefact, _spec())[0, 1]
    checked = infer(x, with_artefact, _spec(flip_check=True))[0, 1]  # no budget: every candidate
    lesion = x[0, 0] > 0.5
    artefact = (plain > 0.5) & ~lesion
    assert artefact.any()  # the stub does raise false alarms without the check
    assert (checked[lesion] > 0.99).all()
    assert (checked[artefact] < 0.5).all()
    assert not ((checked > 0.5) & ~lesion).any()


def test_only_candidates_cost_inference():
    windows = []

    def counting(x):
        windows.append(x.shape[0])
        return pointwise(x)

    spec = _spec(flip_check=True, roi_size=(16, 16, 16))
    study = torch.zeros((1, 1, 20, 40, 40))
    infer(study, counting, spec)
    assert sum(windows) == 2 * 3 * 3  # the study's own windows; no candidate, no check
    windows.clear()
    study[0, 0, 10, 20, 20] = 1.0
    infer(study, counting, spec)
    # the study's windows, then one window around the candidate in each of the 7 flipped views
    assert sum(windows) == 2 * 3 * 3 + len(FLIPS)


def test_candidate_boxes_grow_merge_and_stay_inside():
    p = torch.zeros((1, 2, 10, 30, 30))
    p[0, 0] = 1.0
    for z, y, x in [(5, 5, 5), (5, 5, 8), (5, 25, 25), (0, 0, 29)]:
        p[0, :, z, y, x] = torch.tensor([0.0, 1.0])
    boxes = sorted(candidate_boxes(p), key=lambda b: (b[1].start, b[2].start))
    assert boxes == [
        (slice(0, 3), slice(0, 3), slice(27, 30)),  # clipped at the volume's corner
        (slice(3, 8), slice(3, 8), slice(3, 11)),  # two voxels 3 apart: one grown box
        (slice(3, 8), slice(23, 28), slice(23, 28)),
    ]
    assert candidate_boxes(torch.stack([torch.ones(10, 30, 30), torch.zeros(10, 30, 30)])[None]) == []


def test_context_box_holds_the_candidate_with_a_quarter_window_each_side():
    shape = (20, 100, 100)
    assert context_box((slice(9, 11), slice(50, 54), slice(0, 4)), shape, ROI) == (
        slice(6, 14), slice(44, 60), slice(0, 16))  # one window; shifted inside at the edge
    big = context_box((slice(2, 18), slice(10, 60), slice(30, 31)), shape, ROI)
    assert big == (slice(0, 20), slice(6, 64), slice(22, 38))  # core + 2x4 (z: clipped to the study)
    assert all(b.stop <= n for b, n in zip(big, shape))
    rng = np.random.default_rng(0)
    for _ in range(200):
        start = rng.integers(0, [19, 99, 99])
        core = tuple(slice(int(s), int(s + rng.integers(1, n - s + 1))) for s, n in zip(start, shape))
        box = context_box(core, shape, ROI)
        assert all(b.start <= c.start and c.stop <= b.stop and b.start >= 0 and b.stop <= n
                   for b, c, n in zip(box, core, shape))


def test_the_check_spends_at_most_the_first_pass_windows_largest_surest_first():
    """False alarms at a fixed spot of every window, plus the lesion: with the default budget (the first
    pass's 27 windows) the check runs what fits (7 windows per one-window candidate), the rest keep
    their first-pass probabilities; ranking puts the lesion (largest, surest) first."""
    from medseg.core.pipeline.flip_check import _ranked, candidate_boxes, window_count

    windows = []

    def counting(x):
        windows.append(x.shape[0])
        return with_artefact(x)

    x = _volume()
    checked = infer(x, counting, _spec(flip_check=True, flip_check_budget=1.0))[0, 1]
    assert window_count((20, 40, 40), ROI, 0.0) == 27
    extra = sum(windows) - 27
    assert len(FLIPS) <= extra <= 27  # bounded: at most twice the study's own inference
    lesion = x[0, 0] > 0.5
    assert (checked[lesion] > 0.99).all()
    assert ((checked > 0.5) & ~lesion).any()  # false alarms the budget did not reach stay (counted)
    plain = infer(x, with_artefact, _spec())
    boxes = candidate_boxes(plain)
    assert len(boxes) >= 5
    first = _ranked(plain, boxes)[0]
    assert lesion[first].sum() == lesion.sum()  # the lesion's box ranks first
    from monai.inferers import sliding_window_inference

    for shape, overlap in (((20, 44, 44), 0.25), ((20, 44, 44), 0.0), ((8, 16, 50), 0.5), ((5, 9, 9), 0.25)):
        windows.clear()
        sliding_window_inference(torch.zeros((1, 1, *shape)), ROI, 1, counting, overlap=overlap)
        assert window_count(shape, ROI, overlap) == len(windows), (shape, overlap)  # as MONAI scans
