"""Benchmark: the metrics of one 512x512x200 review, medseg against two peers in the same run.

Masks on a 512 x 512 x 200 grid (0.78 x 0.78 x 1.25 mm). Two cases:

* **typical**: three reference tumors (50, 24, 8 mm); the prediction under-segments the largest,
  misses the smallest and adds one false positive;
* **large**: one 15 cm mass, contoured 4 mm too small all round (the union's bounding box is large).

Peers, computing the same numbers (Dice, HD95, mean surface distance, lesion components):

* **monai-full**: MONAI's metrics and scipy's labelling on the whole volume (no crop), as a first
  implementation would call them;
* **deepmind-full**: DeepMind's ``surface-distance`` package on the whole volume (+ scipy labelling).

Also the whole review's cost as the service pays it: decoding our SEG and the corrected SEG
(200 frames each) plus scoring. Prints seconds (median of 3 after a warm-up), ratios and the values
each computed. No timing is asserted anywhere.

    python bench/review.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPE = (200, 512, 512)
SPACING = (1.25, 0.78, 0.78)


def ellipsoid(center_mm, radius_mm) -> np.ndarray:
    zz, yy, xx = (np.arange(n, dtype=np.float32) * s for n, s in zip(SHAPE, SPACING))
    return (((zz[:, None, None] - center_mm[0]) / radius_mm) ** 2 + ((yy[None, :, None] - center_mm[1]) / radius_mm) ** 2
            + ((xx[None, None, :] - center_mm[2]) / radius_mm) ** 2) <= 1.0


def cases() -> dict:
    ref = ellipsoid((120, 200, 200), 25) | ellipsoid((80, 300, 120), 12) | ellipsoid((150, 120, 300), 4)
    pred = ellipsoid((121, 201, 199), 21) | ellipsoid((80, 300, 121), 11) | ellipsoid((60, 100, 100), 6)
    big_ref = ellipsoid((125, 200, 200), 75)
    big_pred = ellipsoid((125, 200, 200), 71)
    return {"typical": (pred, ref), "large": (big_pred, big_ref)}


def medseg_metrics(pred, ref):
    from medseg.core.volume import Volume
    from medseg.quality.scores import score_review

    affine = np.diag([*SPACING, 1.0])
    s = score_review(Volume(pred, affine), Volume(ref, affine))
    return {"dice": s.dice, "hd95": s.hd95_mm, "msd": s.msd_mm, "lesions": s.reference_lesions}


def monai_full(pred, ref):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance
    from scipy import ndimage

    p, r = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    dice = compute_dice(p, r, include_background=True, ignore_empty=False).item()
    hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(SPACING)).item()
    msd = compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=list(SPACING)).item()
    lesions = ndimage.label(ref, structure=np.ones((3, 3, 3)))[1]
    ndimage.label(pred, structure=np.ones((3, 3, 3)))
    return {"dice": dice, "hd95": hd95, "msd": msd, "lesions": lesions}


def deepmind_full(pred, ref):
    import surface_distance as sd
    from scipy import ndimage

    d = sd.compute_surface_distances(ref, pred, SPACING)
    a, b = sd.compute_average_surface_distance(d)
    lesions = ndimage.label(ref, structure=np.ones((3, 3, 3)))[1]
    ndimage.label(pred, structure=np.ones((3, 3, 3)))
    return {"dice": sd.compute_dice_coefficient(ref, pred), "hd95": sd.compute_robust_hausdorff(d, 95),
            "msd": (a + b) / 2, "lesions": lesions}


def timed(fn, *args, repeat: int = 3):
    fn(*args)  # warm-up (imports, allocator)
    times, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def whole_review(pred, ref, workdir: Path) -> float:
    """Decode our SEG and the corrected SEG (200 frames of 512x512 each) and score: a review's cost."""
    from medseg.core.seg import read_seg_mask, write_seg
    from medseg.core.volume import Volume
    from medseg.quality.masks import seg_mask
    from medseg.training.config import TUMOR_LABEL
    from medseg.training.ct_writer import ct_datasets

    affine = np.diag([*SPACING, 1.0])
    headers = ct_datasets(Volume(np.zeros(SHAPE, np.int16), affine), patient_name="BENCH^REVIEW", patient_id="BENCH")
    write_seg(workdir / "ours.dcm", pred.astype(np.uint8), headers, [TUMOR_LABEL], model_name="bench", model_version="1")
    write_seg(workdir / "fix.dcm", ref.astype(np.uint8), headers, [TUMOR_LABEL], model_name="viewer", model_version="1",
              ground_truth=True, series_number=9001)
    uids = [str(h.SOPInstanceUID) for h in headers]
    series = str(headers[0].SeriesInstanceUID)
    fix = (workdir / "fix.dcm").read_bytes()

    def review():
        ours = read_seg_mask(workdir / "ours.dcm", uids) > 0
        corrected = seg_mask(fix, series, uids, SHAPE)
        return medseg_metrics(ours, corrected)

    seconds, _ = timed(review, repeat=3)
    return seconds


def main() -> None:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"review metrics on a {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} grid, spacing {SPACING} mm "
          f"(median of 3 after a warm-up)")
    print(f"{'case':9} {'implementation':14} {'seconds':>8} {'ratio':>7}  {'Dice':>7} {'HD95 mm':>8} {'MSD mm':>7} lesions")
    for name, (pred, ref) in cases().items():
        rows = [("medseg", *timed(medseg_metrics, pred, ref)), ("monai-full", *timed(monai_full, pred, ref, repeat=1)),
                ("deepmind-full", *timed(deepmind_full, pred, ref, repeat=1))]
        ours = rows[0][1]
        for impl, seconds, v in rows:
            print(f"{name:9} {impl:14} {seconds:8.3f} {seconds / ours:6.1f}x  {v['dice']:7.4f} {v['hd95']:8.2f} "
                  f"{v['msd']:7.2f} {v['lesions']}")
    with tempfile.TemporaryDirectory() as tmp:
        pred, ref = cases()["typical"]
        print(f"whole review (decode 2 SEGs of 200 frames + metrics), typical case: {whole_review(pred, ref, Path(tmp)):.3f} s")


if __name__ == "__main__":
    main()
