"""Benchmark: `medseg segment` of a whole real CT vs a MONAI Deploy-style pipeline, in the same run.

The study (default): the whole real chest CT LIDC-IDRI-0314 (512 x 512 x 275, 0.78 x 0.78 x 1 mm,
``../shared/data/full-fov-ct``; TCIA, CC BY 3.0) converted to a DICOM series; ``--slices N`` takes
N slices around its nodule, ``--phantom`` a 512 x 512 x ``--slices`` phantom instead. Then, each
in its own child process (wall time includes start-up and imports; peak RSS is that process's
own), on the same files with the same weights, ``--repeats`` times alternating:

* **medseg**: ``medseg segment <dicom> --out DIR --model M`` (body mask, bounded flip check,
  lesion filters, SEG, result.json), as a user runs it.
* **monai-deploy**: the operator chain of the MONAI Deploy App SDK's segmentation apps, assembled
  from the same libraries (the SDK itself needs Holoscan and CUDA, which this CPU machine cannot
  install): pydicom reads and stacks the series (DICOMSeriesToVolumeOperator), MONAI
  ``Orientationd`` + ``Spacingd`` + ``ScaleIntensityRanged`` + ``CropForegroundd``,
  ``sliding_window_inference`` with the MonaiSegInferenceOperator defaults (overlap 0.25,
  sw_batch_size 4), softmax, ``Invertd``, argmax, and a highdicom ``Segmentation``
  (DICOMSegmentationWriterOperator).

Prints every run, the medians and minimums, the ratios, per-stage seconds of the last run, and
for each pipeline the Dice against the truth (the nodule, >= 2 of 4 readers) and the number of
lesions (components) touching no truth. No timing is asserted anywhere.

    python bench/segment.py [--slices N] [--phantom] [--repeats 3] [--model DIR] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import timed  # noqa: E402  (bench/, the script's own folder, is on sys.path)

# ---------------------------------------------------------------- children


def run_reference(study: Path, out: Path, model_dir: Path) -> dict:
    import highdicom as hd
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose, CropForegroundd, Invertd, Orientationd, ScaleIntensityRanged, Spacingd
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
        CropForegroundd(keys="image", source_key="image"),
    ])
    data = pre({"image": MetaTensor(torch.from_numpy(hu)[None], affine=torch.from_numpy(ras))})
    stages["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.no_grad():
        logits = sliding_window_inference(data["image"][None], roi_size=manifest.input.roi_size_zyx,
                                          sw_batch_size=4, overlap=0.25, predictor=model.network)
    stages["inference"] = time.perf_counter() - t

    t = time.perf_counter()
    data["pred"] = torch.softmax(logits[0], dim=0)
    data["pred"].applied_operations = data["image"].applied_operations
    inverted = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(data)
    mask = np.asarray(inverted["pred"].argmax(0)).astype(bool)
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run_reference(Path(args.study), out, Path(args.model))
    (out / "reference.json").write_text(json.dumps(result))


# ---------------------------------------------------------------- parent


def build_whole_ct(workdir: Path, root: Path, slices: int | None) -> Path:
    """The LIDC whole chest CT as a DICOM series (``slices`` around the nodule, or all)."""
    from medseg.training.case_study import write_ct_study
    from medseg.training.real_ct import FULL_FOV_CASE, LIDC_ATTRIBUTION, LIDC_SOURCE, slab, whole_ct

    case = workdir / f"{FULL_FOV_CASE}-{slices or 'all'}"
    if not (case / "case.json").exists():
        image, truth = whole_ct(root)
        if slices:
            centre = int(np.argwhere(truth.array.any(axis=(1, 2))).mean())
            start = max(0, min(image.shape[0] - slices, centre - slices // 2))
            image, truth = slab(image, (start, start + slices)), slab(truth, (start, start + slices))
        write_ct_study(image, truth, case, name=FULL_FOV_CASE, source=LIDC_SOURCE, attribution=LIDC_ATTRIBUTION,
                       body_part="CHEST")
    return case


def build_phantom(workdir: Path, slices: int, size: int, seed: int) -> Path:
    from medseg.training.phantom_study import write_phantom_study

    case = workdir / f"phantom-{seed}-{slices}x{size}"
    if not (case / "case.json").exists():
        write_phantom_study(case, seed, shape=(slices, size, size), spacing=(1.25, 0.78, 0.78), n_tumors=5)
        uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sorted((case / "dicom").glob("*.dcm"))]
        (case / "case.json").write_text(json.dumps({"sop_instance_uids": uids}))
    return case


def scores(seg_path: Path, uids: list[str], truth: np.ndarray) -> dict:
    """Dice against the truth, and how many lesions (26-connected components) touch no truth voxel."""
    from scipy import ndimage

    from medseg.core.scoring import dice
    from medseg.core.seg import read_seg_mask

    mask = read_seg_mask(seg_path, uids) > 0
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    hit = set(np.unique(components[truth]).tolist()) - {0}
    return {"dice": round(dice(mask, truth), 4), "false_positive_lesions": count - len(hit),
            "predicted_ml": round(float(mask.sum()) * 1e-3, 1), "mask": mask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=None, help="whole CT: slices around the nodule (default all 275)")
    parser.add_argument("--phantom", action="store_true", help="a phantom study instead of the real CT")
    parser.add_argument("--size", type=int, default=512, help="phantom rows and columns")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--full-fov-dir", type=Path, default=REPO.parent / "shared" / "data" / "full-fov-ct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped default model)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--study")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.model is None:
        from medseg.config import DEFAULT_MODEL

        args.model = REPO / "models" / DEFAULT_MODEL
    if args.child:
        child(args)
        return

    import os
    import platform
    import statistics

    from medseg.core.io.nifti import read_nifti

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="medseg-bench-"))
    if args.phantom or not args.full_fov_dir.is_dir():
        if not args.phantom:
            print(f"{args.full_fov_dir} not found: benchmarking a phantom instead")
        case = build_phantom(workdir, args.slices or 200, args.size, args.seed)
    else:
        case = build_whole_ct(workdir, args.full_fov_dir, args.slices)
    uids = json.loads((case / "case.json").read_text())["sop_instance_uids"]
    truth = read_nifti(case / "truth.nii.gz").array > 0
    commands = {
        "monai-deploy": [sys.executable, __file__, "--child", "--study", str(case / "dicom"),
                         "--out", str(workdir / "out-monai-deploy"), "--model", str(args.model),
                         "--threads", str(args.threads)],
        "medseg": [sys.executable, "-m", "medseg", "segment", str(case / "dicom"), "--out", str(workdir / "out-medseg"),
                   "--model", str(args.model)],
    }
    env = {**os.environ, **({"MEDSEG_CPU_THREADS": str(args.threads)} if args.threads else {})}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores; study {case.name}: {len(uids)} slices; "
          f"model {args.model}")
    for i in range(args.repeats):
        for name, cmd in commands.items():
            runs[name].append(timed(cmd, env))
            print(f"run {i + 1} {name:<13} {runs[name][-1][0]:6.1f} s  {runs[name][-1][1]:6.0f} MB")

    stages = {"monai-deploy": json.loads((workdir / "out-monai-deploy" / "reference.json").read_text())["stages"],
              "medseg": json.loads((workdir / "out-medseg" / "result.json").read_text())["timings_s"]}
    found = {"monai-deploy": scores(workdir / "out-monai-deploy" / "seg.dcm", uids, truth),
             "medseg": scores(workdir / "out-medseg" / "seg.dcm", uids, truth)}
    med = {n: [statistics.median(x) for x in zip(*r)] for n, r in runs.items()}
    low = {n: [min(x) for x in zip(*r)] for n, r in runs.items()}
    ref, ours = "monai-deploy", "medseg"
    print(f"\n{'':<22}{'monai-deploy':>14}{'medseg':>10}{'ratio':>9}")
    for label, table in (("median", med), ("minimum", low)):
        print(f"{label + ' seconds':<22}{table[ref][0]:>14.1f}{table[ours][0]:>10.1f}{table[ref][0] / table[ours][0]:>8.2f}x")
        print(f"{label + ' peak RSS MB':<22}{table[ref][1]:>14.0f}{table[ours][1]:>10.0f}{table[ref][1] / table[ours][1]:>8.2f}x")
    for name in commands:
        f = found[name]
        print(f"{name:<13} Dice vs truth {f['dice']:.4f}, {f['false_positive_lesions']} false-positive lesion(s), "
              f"{f['predicted_ml']} mL called; stages (last run): "
              + ", ".join(f"{k} {v:.1f}" for k, v in stages[name].items()))
    from medseg.core.scoring import dice

    print(f"medseg vs monai-deploy mask Dice {dice(found[ours]['mask'], found[ref]['mask']):.4f}")
    summary = {"study": case.name, "slices": len(uids), "model": str(args.model), "runs": runs,
               "median": med, "minimum": low, "speedup_median": round(med[ref][0] / med[ours][0], 2),
               "rss_ratio_median": round(med[ref][1] / med[ours][1], 2), "stages_last_run": stages,
               "scores": {n: {k: v for k, v in f.items() if k != "mask"} for n, f in found.items()}}
    (workdir / "bench-segment.json").write_text(json.dumps(summary, indent=2))
    print(f"details: {workdir / 'bench-segment.json'}")


if __name__ == "__main__":
    main()
