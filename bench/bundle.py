"""Benchmark: an imported MONAI bundle in `medseg segment` vs `python -m monai.bundle run`, one run.

The zoo's spleen_ct_segmentation config (``tests/data/monai-bundles``) with weights made from its
network (seed 0; the zoo ships none), a phantom CT of 512 x 512 x N written as NIfTI, then, each
in its own child process (peak RSS is that process's own):

* **monai**: ``python -m monai.bundle run`` with the bundle's ``inference.json`` (CPU, no AMP,
  ``num_workers`` 0), which writes the label map as NIfTI;
* **medseg**: ``medseg segment ct.nii.gz --model <imported version>`` (what the CLI and the worker
  run), which writes mask.nii.gz, SEG-ready, and result.json.

Each side runs ``--repeats`` times, alternating (peak RSS moves by ±150 MB between runs of the
same command: allocator and thread timing); prints every run, the medians, the voxel agreement of
the two label maps and the ratios of the medians and of the minimums (the least noisy figure of a
peak: noise only adds). No timing is asserted anywhere.

    python bench/bundle.py [--slices 134] [--size 512] [--repeats 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BUNDLE = REPO / "tests" / "data" / "monai-bundles" / "spleen_ct_segmentation"

from common import timed  # noqa: E402  (bench/, the script's own folder, is on sys.path)

from tests.conftest import monai_bundle_env  # noqa: E402 - after the path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=134)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    import os

    import numpy as np
    import torch

    from medseg.core.io.nifti import read_nifti, write_nifti
    from medseg.core.phantom import generate_phantom
    from medseg.models.bundle_pipeline import build_bundle_network

    bundle = work / "spleen_ct_segmentation"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(BUNDLE, bundle)
    (bundle / "models").mkdir()
    torch.manual_seed(0)
    torch.save(build_bundle_network(bundle / "configs").state_dict(), bundle / "models" / "model.pt")
    phantom = generate_phantom(7, shape=(args.slices, args.size, args.size), spacing=(2.5, 0.78, 0.78))
    write_nifti(phantom.image, work / "ct.nii.gz")

    env = {**os.environ, "MEDSEG_MODELS_ROOT": str(work / "models"), "MEDSEG_SERVICE__DATA_DIR": str(work / "data")}
    imported = subprocess.run([sys.executable, "-m", "medseg", "models", "import-bundle", str(bundle),
                               "--name", "spleen", "--version", "0.5.0"], capture_output=True, text=True, env=env)
    if imported.returncode:
        raise SystemExit(imported.stderr)

    monai_cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
                 str(bundle / "configs" / "inference.json"), "--meta_file",
                 str(bundle / "configs" / "metadata.json"), "--bundle_root", str(bundle),
                 "--datalist", f"['{work / 'ct.nii.gz'}']", "--output_dir", str(work / "monai"),
                 "--device", "$torch.device('cpu')", "--evaluator#amp", "False", "--dataloader#num_workers", "0"]
    medseg_cmd = [sys.executable, "-m", "medseg", "segment", str(work / "ct.nii.gz"), "--out",
                  str(work / "medseg"), "--model", str(work / "models" / "spleen" / "0.5.0")]
    runs: dict[str, list[tuple[float, float]]] = {"monai": [], "medseg": []}
    for _ in range(args.repeats):
        shutil.rmtree(work / "monai", ignore_errors=True)
        runs["monai"].append(timed(monai_cmd, monai_bundle_env()))
        runs["medseg"].append(timed(medseg_cmd, env))
    monai_s, monai_mb = (statistics.median(x) for x in zip(*runs["monai"]))
    medseg_s, medseg_mb = (statistics.median(x) for x in zip(*runs["medseg"]))
    (theirs_file,) = (work / "monai").rglob("*.nii.gz")
    theirs = read_nifti(theirs_file).array.astype(np.uint8)
    ours = read_nifti(work / "medseg" / "mask.nii.gz").array
    result = {
        "input": f"{args.size}x{args.size}x{args.slices} phantom CT (NIfTI)",
        "runs": {side: [{"seconds": round(sec, 1), "peak_rss_mb": round(mb)} for sec, mb in r]
                 for side, r in runs.items()},
        "monai_bundle_run_median": {"seconds": round(monai_s, 1), "peak_rss_mb": round(monai_mb)},
        "medseg_segment_median": {"seconds": round(medseg_s, 1), "peak_rss_mb": round(medseg_mb)},
        "time_ratio_medseg_over_monai": round(medseg_s / monai_s, 2),
        "rss_ratio_medseg_over_monai": round(medseg_mb / monai_mb, 2),
        "min_time_ratio": round(min(r[0] for r in runs["medseg"]) / min(r[0] for r in runs["monai"]), 2),
        "min_rss_ratio": round(min(r[1] for r in runs["medseg"]) / min(r[1] for r in runs["monai"]), 2),
        "voxel_agreement": round(float((ours == theirs).mean()), 6),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
