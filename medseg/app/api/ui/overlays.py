"""Overlay thumbnails: a few axial slices through each lesion of a result, the CT in a soft-tissue
window with the SEG's outline drawn on it (server-rendered PNG), so a person sees at a glance
whether the mask sits on the tumor.

The CT comes from the spool, the mask from the SEG the job wrote (the same two a review is scored
against: :mod:`medseg.quality.masks`). Lesions are the SEG's connected components, largest first;
each gets the slices at a quarter, half and three quarters of its extent, cropped around it.
Rendered PNGs are kept beside the SEG (``overlays/``) and served from there afterwards.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medseg.core.io.decode import decode_slice
from medseg.jobs.orm import Job
from medseg.quality.masks import read_our_seg, source_series

WINDOW_HU = (-160.0, 240.0)  # soft tissue (level 40, width 400)
SIZE = 192  # pixels of a thumbnail's side
MAX_LESIONS = 6
FRACTIONS = (0.25, 0.5, 0.75)
OUTLINE = (255, 48, 48)


def _lesions(spool_root: Path, job: Job):
    """Source headers (slice order), the SEG's mask on them, its components' bounding boxes and
    sizes, and the component labels largest first."""
    headers, _ = source_series(spool_root, job)
    mask = read_our_seg(job, [str(h.SOPInstanceUID) for h in headers])
    labels, _ = ndimage.label(mask)
    boxes = ndimage.find_objects(labels)
    sizes = [int(np.count_nonzero(labels[box] == i)) for i, box in enumerate(boxes, start=1)]  # within each box only
    order = sorted(range(1, len(boxes) + 1), key=lambda i: -sizes[i - 1])[:MAX_LESIONS]
    return headers, mask, boxes, sizes, order


def _folder(job: Job) -> Path:
    return Path(job.seg_path).parent / "overlays"


def plan(spool_root: Path, job: Job) -> list[dict]:
    """The lesions of a job's SEG, largest first: rank, voxels, the slices to draw (source order)
    and their instance numbers (what a viewer shows). The first call draws every thumbnail while
    the SEG and the series are loaded; plan and PNGs are kept beside the SEG (a result never
    changes: new images make a new job)."""
    cache = _folder(job) / "plan.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    headers, mask, boxes, sizes, order = _lesions(spool_root, job)
    out, pixels = [], {}
    _folder(job).mkdir(parents=True, exist_ok=True)
    for rank, label in enumerate(order, start=1):
        z, rows, cols = boxes[label - 1]
        slices = sorted({z.start + int(f * (z.stop - z.start - 1) + 0.5) for f in FRACTIONS})
        for k in slices:
            if k not in pixels:
                h = headers[k]
                pixels[k] = decode_slice(Path(h.filename), k, int(h.Rows), int(h.Columns))
            (_folder(job) / f"lesion{rank}-slice{k}.png").write_bytes(_draw(pixels[k], mask[k], (rows, cols)))
        out.append({"lesion": rank, "voxels": int(sizes[label - 1]), "slices": slices,
                    "instances": [int(headers[k].get("InstanceNumber", k + 1)) for k in slices]})
    cache.write_text(json.dumps(out))
    return out


def render(spool_root: Path, job: Job, lesion: int, k: int) -> bytes:
    """The PNG of lesion ``lesion`` (1 = largest) on slice ``k`` (source order), as drawn by
    :func:`plan` (run again if the overlays were removed)."""
    path = _folder(job) / f"lesion{lesion}-slice{k}.png"
    if not path.is_file():
        (_folder(job) / "plan.json").unlink(missing_ok=True)
        plan(spool_root, job)
    if not path.is_file():
        raise LookupError(f"no lesion {lesion} on slice {k} in this result")
    return path.read_bytes()


def _draw(image: np.ndarray, mask: np.ndarray, box: tuple[slice, slice]) -> bytes:
    """The CT windowed to grey, every mask outline on the slice in red (the lesion's own and any
    neighbour's), cropped to a square around the lesion's in-plane box with a margin."""
    lo, hi = WINDOW_HU
    grey = (np.clip((image.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    outline = mask & ~ndimage.binary_erosion(mask)
    rgb[outline] = OUTLINE
    rows, cols = box
    centre = ((rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2)
    half = max(32, int(1.5 * max(rows.stop - rows.start, cols.stop - cols.start)))
    r0, c0 = max(0, centre[0] - half), max(0, centre[1] - half)
    crop = rgb[r0:centre[0] + half, c0:centre[1] + half]
    picture = Image.fromarray(np.ascontiguousarray(crop)).resize((SIZE, SIZE), Image.Resampling.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()
