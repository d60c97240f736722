"""Flip test-time augmentation spent only where the model found something.

Averaging a network's predictions over the eight axis flips of its input is the standard
test-time augmentation (nnU-Net's "mirroring"): a false alarm the network raises on one view of
a noise pattern rarely survives the other seven. Doing it for the whole study costs eight
inferences. Here the study is inferred once; then each candidate lesion (a component of
predicted foreground) is re-predicted on the seven flipped views of one window around it, and
its probabilities become the mean of all eight views. A study with a handful of candidates
pays a few dozen windows instead of 7x its whole inference.

The shipped models are trained with left-right mirroring only, so six of the eight views show
the network anatomy upside down or back to front, which it never saw: only what it finds in
spite of that survives the mean. Mirroring along all three axes in training cost more than it
gave in the same 28 minutes (medseg.training.config ``mirror_axes``). ``medseg train`` chooses the lesion
filters with the check on, and the README has the measurements: on ct-phantom 2.1.0 it cut
false-positive lesions on the held-out phantoms from 0.3 to 0.05 per study.

**Bounded cost.** A model that finds many candidates (52 on a whole real chest CT with the
phantom-trained 2.1.0) would pay 7 windows or more for each, without bound. The check spends at
most as many windows as the first pass over the study used (``flip_check_budget`` 1.0 of the
manifest's ``inference``, what ``medseg train`` writes: a study costs at most twice its plain
inference; versions made before the bound have none, so that they keep their measured results), on the candidates ranked by size times peak probability, largest first; a
candidate the budget does not reach keeps its first-pass probabilities and is counted in
``stats["unchecked"]``.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

#: the seven non-identity flips of a (N, C, D, H, W) tensor's spatial axes
FLIPS: tuple[tuple[int, ...], ...] = tuple(f for n in (1, 2, 3) for f in itertools.combinations((2, 3, 4), n))
#: a candidate's probabilities are replaced in its bounding box grown by this many voxels
CORE_MARGIN = 2

Probe = Callable[[torch.Tensor], torch.Tensor]  # (1, 1, d, h, w) image -> (1, C, d, h, w) probabilities


def candidate_boxes(probabilities: torch.Tensor, margin: int = CORE_MARGIN) -> list[tuple[slice, slice, slice]]:
    """Bounding boxes (grown by ``margin``, merged where they touch) of predicted foreground."""
    foreground = (probabilities[0].argmax(0) > 0).cpu().numpy()
    if not foreground.any():
        return []
    grown = ndimage.binary_dilation(foreground, np.ones((3, 3, 3), bool), iterations=margin)
    regions, _ = ndimage.label(grown, structure=np.ones((3, 3, 3), bool))
    return [box for box in ndimage.find_objects(regions) if box is not None]


def context_box(core: tuple[slice, ...], shape, roi) -> tuple[slice, ...]:
    """The window that holds ``core`` with a quarter window of context on each side (at least one
    window), shifted to stay inside the volume where it fits."""
    box = []
    for s, n, r in zip(core, shape, roi):
        size = min(n, max(r, s.stop - s.start + 2 * (r // 4)))
        start = int(np.clip((s.start + s.stop - size) // 2, 0, n - size))
        box.append(slice(start, start + size))
    return tuple(box)


def window_count(shape, roi, overlap: float) -> int:
    """Sliding windows MONAI's ``sliding_window_inference`` runs over ``shape`` (its scan interval)."""
    count = 1
    for n, r in zip(shape, roi):
        if n > r:
            interval = max(int(r * (1 - overlap)), 1)
            count *= int(np.ceil((n - r) / interval)) + 1
    return count


def _ranked(probabilities: torch.Tensor, boxes: list) -> list:
    """Candidates by size times peak foreground probability, largest first."""
    foreground = 1 - probabilities[0, 0]

    def weight(box):
        region = foreground[box]
        return float((region > 0.5).sum()) * float(region.max())
    return sorted(boxes, key=weight, reverse=True)


def flip_check(tensor: torch.Tensor, probabilities: torch.Tensor, probe: Probe, roi, overlap: float = 0.25,
               budget: float | None = 1.0, stats: dict | None = None) -> torch.Tensor:
    """``probabilities`` with the candidates' boxes replaced by the mean over all 8 flips, within
    the budget of the first pass's window count.

    ``tensor`` (1, 1, D, H, W) is the model input, ``probabilities`` (1, C, D, H, W) the
    prediction on it (the identity view), ``probe`` the same inference on a sub-volume (with
    ``overlap``, as the first pass); ``budget`` a multiple of the first pass's window count (None: all).
    ``stats`` receives candidates, checked, unchecked, windows, budget.
    """
    out = probabilities.clone()
    shape = tuple(tensor.shape[2:])
    budget = int(budget * window_count(shape, roi, overlap)) if budget is not None else None
    candidates = _ranked(probabilities, candidate_boxes(probabilities))
    spent = checked = 0
    for core in candidates:
        context = context_box(core, shape, roi)
        cost = len(FLIPS) * window_count(tuple(c.stop - c.start for c in context), roi, overlap)
        if budget is not None and spent + cost > budget:
            continue  # a smaller candidate further down may still fit
        spent += cost
        checked += 1
        sub = tensor[(slice(None), slice(None), *context)]
        total = sum(probe(sub.flip(f)).flip(f) for f in FLIPS)  # one view at a time: bounded memory
        inner = (slice(None), slice(None), *(slice(c.start - x.start, c.stop - x.start) for c, x in zip(core, context)))
        index = (slice(None), slice(None), *core)
        out[index] = (probabilities[index] + total[inner]) / (len(FLIPS) + 1)
    if stats is not None:
        stats.update(candidates=len(candidates), checked=checked, unchecked=len(candidates) - checked,
                     windows=spent, budget=budget)
    return out
