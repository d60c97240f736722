"""Benchmark: `medseg segment` vs a naive reference pipeline, measured in the same run.

Builds one 512x512x200 phantom CT study, then runs each pipeline in its own
child process (so peak RSS is that pipeline's own) on the same files with the
same weights:

* **medseg**: ``medseg.jobs.runner.segment_study`` (what `medseg segment` runs).
* **reference**: the same libraries with their defaults, as a first
  implementation would assemble them: pydicom reads and stacks every file,
  MONAI ``Orientationd`` + ``Spacingd`` + ``ScaleIntensityRanged``, default
  ``sliding_window_inference`` (overlap 0.25, constant blending, batch 1),
  ``Invertd`` back to the source grid, ``RemoveSmallObjects`` with the same
  minimum lesion size, highdicom ``Segmentation`` with default options.

Prints per-stage seconds, peak RSS, Dice of each against the truth and
against each other, and the ratios. No timing is asserted anywhere.

    python bench/segment.py [--slices 200] [--size 512] [--seed 4242] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- children


def run_medseg(study: Path, out: Path, model_dir: Path) -> dict:
    from medseg.config import Settings
    from medseg.jobs.runner import segment_study

    started = time.perf_counter()
    result = segment_study(study, out, Settings(), model=str(model_dir))
    total = time.perf_counter() - started
    t = result.timings_s
    return {
        "stages": {"read": t["load"], "model": t["model_load"], "preprocess": t["preprocess"],
                   "inference": t["inference"], "postprocess": t["postprocess"], "write_seg": t["write"]},
        "total_s": total,
        "seg": str(out / "seg.dcm"),
    }


def run_reference(study: Path, out: Path, model_dir: Path) -> dict:
    import highdicom as hd
    import numpy as np
    import pydicom
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose, Invertd, Orientationd, RemoveSmallObjects, ScaleIntensityRanged, Spacingd
    from pydicom.sr.codedict import codes

    from medseg.models.store import load_model

    stages = {}
    started = t = time.perf_counter()
    # read: pydicom, stack, sort by position along the slice normal
    datasets = [pydicom.dcmread(p) for p in sorted(study.iterdir())]
    iop = np.array(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets]).astype(np.float32)
    spacing_rc = [float(v) for v in datasets[0].PixelSpacing]
    positions = np.array([d.ImagePositionPatient for d in datasets], float)
    lps = np.eye(4)
    lps[:3, 0] = (positions[-1] - positions[0]) / (len(datasets) - 1)
    lps[:3, 1] = iop[3:] * spacing_rc[0]
    lps[:3, 2] = iop[:3] * spacing_rc[1]
    lps[:3, 3] = positions[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    stages["read"] = time.perf_counter() - t

    t = time.perf_counter()
    model = load_model(model_dir)
    manifest = model.manifest
    stages["model"] = time.perf_counter() - t

    t = time.perf_counter()
    sx, sy, sz = manifest.input.spacing_xyz_mm
    lo, hi = manifest.input.window_hu
    pre = Compose([
        Orientationd(keys="image", axcodes="SPL"),  # medseg's canonical axes: k -> S, r -> P, c -> L
        Spacingd(keys="image", pixdim=(sz, sy, sx), mode="bilinear"),
        ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
    ])
    data = pre({"image": MetaTensor(torch.from_numpy(hu)[None], affine=torch.from_numpy(ras))})
    stages["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.no_grad():
        logits = sliding_window_inference(data["image"][None], roi_size=manifest.input.roi_size_zyx,
                                          sw_batch_size=1, predictor=model.network)
    stages["inference"] = time.perf_counter() - t

    t = time.perf_counter()
    data["pred"] = torch.softmax(logits[0], dim=0)
    data["pred"].applied_operations = data["image"].applied_operations
    inverted = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(data)
    labels = inverted["pred"].argmax(0, keepdim=True)
    voxel_ml = abs(np.linalg.det(lps[:3, :3])) / 1000.0
    labels = RemoveSmallObjects(min_size=int(manifest.postprocess.min_lesion_ml / voxel_ml), connectivity=3)(labels)
    mask = np.asarray(labels[0]).astype(bool)
    stages["postprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    label = manifest.labels[0]
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=mask,
        segmentation_type="BINARY",
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1, segment_label=label.name, segmented_property_category=label.category.to_code(),
            segmented_property_type=label.type.to_code(), algorithm_type="AUTOMATIC",
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=manifest.name, version=manifest.version, family=codes.cid7162.ArtificialIntelligence))],
        series_instance_uid=hd.UID(), series_number=9001, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="reference", manufacturer_model_name="reference", software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(out / "seg.dcm")
    stages["write_seg"] = time.perf_counter() - t
    return {"stages": stages, "total_s": time.perf_counter() - started, "seg": str(out / "seg.dcm")}


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads) if args.threads else None
    fn = run_medseg if args.child == "medseg" else run_reference
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = fn(Path(args.study), out, Path(args.model))
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------- parent


def build_study(workdir: Path, slices: int, size: int, seed: int) -> Path:
    from medseg.training.phantom_study import write_phantom_study

    case = workdir / f"phantom-{seed}-{slices}x{size}"
    if not (case / "phantom.json").exists():
        t = time.perf_counter()
        write_phantom_study(case, seed, shape=(slices, size, size), spacing=(1.25, 0.78, 0.78), n_tumors=5)
        print(f"built {slices}x{size}x{size} phantom study in {time.perf_counter() - t:.1f} s")
    return case


def mask_of(seg_path: str, sources):  # -> numpy array (imported in the child process only)
    import highdicom as hd
    import numpy as np

    from medseg.core.seg import read_seg_mask

    seg = hd.seg.segread(seg_path)
    present = {str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
               for f in seg.PerFrameFunctionalGroupsSequence} if seg.NumberOfFrames else set()
    uids = [str(h.SOPInstanceUID) for h in sources]
    if not present:
        return np.zeros((len(uids), int(sources[0].Rows), int(sources[0].Columns)), np.uint8)
    return read_seg_mask(seg_path, uids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped default model)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--child", choices=["medseg", "reference"])
    parser.add_argument("--study")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.model is None:
        from medseg.config import DEFAULT_MODEL

        args.model = REPO / "models" / DEFAULT_MODEL
    if args.child:
        child(args)
        return

    import numpy as np

    from medseg.core.io import load_study
    from medseg.core.io.nifti import read_nifti
    from medseg.core.scoring import dice

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="medseg-bench-"))
    case = build_study(workdir, args.slices, args.size, args.seed)
    results = {}
    for name in ("reference", "medseg"):
        cmd = [sys.executable, __file__, "--child", name, "--study", str(case / "dicom"), "--out",
               str(workdir / f"out-{name}"), "--model", str(args.model), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:])
            raise SystemExit(f"{name} pipeline failed")
        results[name] = json.loads(line[len("RESULT "):])

    sources = load_study(case / "dicom").volume.source
    truth = read_nifti(case / "truth.nii.gz").array
    masks = {name: mask_of(r["seg"], sources) for name, r in results.items()}
    ours, ref = results["medseg"], results["reference"]

    import os
    import platform

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores; study {args.slices}x{args.size}x{args.size}")
    print(f"{'stage':<12}{'reference s':>14}{'medseg s':>12}{'ratio':>9}")
    for stage in ours["stages"]:
        r, o = ref["stages"][stage], ours["stages"][stage]
        print(f"{stage:<12}{r:>14.2f}{o:>12.2f}{r / max(o, 1e-9):>8.1f}x")
    print(f"{'total':<12}{ref['total_s']:>14.2f}{ours['total_s']:>12.2f}{ref['total_s'] / ours['total_s']:>8.1f}x")
    print(f"{'peak RSS MB':<12}{ref['peak_rss_mb']:>14.0f}{ours['peak_rss_mb']:>12.0f}"
          f"{ref['peak_rss_mb'] / ours['peak_rss_mb']:>8.1f}x")
    print(f"Dice vs truth: reference {dice(masks['reference'], truth):.4f}, medseg {dice(masks['medseg'], truth):.4f}; "
          f"medseg vs reference {dice(masks['medseg'], masks['reference']):.4f}")
    summary = {"speedup_end_to_end": round(ref["total_s"] / ours["total_s"], 2),
               "medseg_peak_rss_mb": round(ours["peak_rss_mb"]),
               "dice_truth": {n: round(dice(m, truth), 4) for n, m in masks.items()},
               "results": results}
    (workdir / "bench-segment.json").write_text(json.dumps(summary, indent=2))
    print(f"details: {workdir / 'bench-segment.json'}")
    _ = np


if __name__ == "__main__":
    main()
