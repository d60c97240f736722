"""A trained network becomes a model version (:func:`finish`, the end of ``medseg train``): the
lesion filters chosen on validation data, the held-out measurements (:func:`evaluate`, also
``medseg evaluate``), ``manifest.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from medseg.core.exceptions import TrainingError
from medseg.core.phantom import generate_phantom
from medseg.core.pipeline.segment import segment
from medseg.core.pipeline.spec import PipelineSpec
from medseg.core.scoring import evaluate_case, summarize
from medseg.core.stats import REPORT_CONFIDENCE, mean_ci, proportion_ci
from medseg.models.manifest import ArchitectureSpec, InputSpec, ModelManifest, WeightsSpec
from medseg.models.store import build_network
from medseg.training.calibration import calibrate_lesion_filters, calibrate_on_real_ct
from medseg.training.checkpoint import CHECKPOINT_FILE, read_checkpoint
from medseg.training.config import (
    HOLDOUT_PHANTOM_SEED0,
    PER_CHUNK,
    STS_HOLDOUT,
    TUMOR_LABEL,
    TrainConfig,
    named_sts_cases,
    require_holdout,
    require_validation,
    sts_cases,
)
from medseg.training.model_card import model_card
from medseg.training.real_ct import MEASURE_SLICES, TRAIN_SLICES, VALIDATION_SLICES, full_fov, require_full_fov


def spec_for(cfg: TrainConfig) -> PipelineSpec:
    return manifest_stub(cfg).pipeline_spec()


def finish(network: torch.nn.Module, cfg: TrainConfig, record: dict,
           report: Callable[[str], None] = print) -> ModelManifest:
    """Write a trained network as model version ``cfg.out``: weights, the lesion filters chosen on
    validation data, the held-out metrics, manifest.json (``record``, the run's own facts, goes into
    its training section) and MODEL_CARD.md."""
    network.eval().to(memory_format=torch.contiguous_format)
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    blob = buffer.getvalue()
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "model.pt").write_bytes(blob)
    (cfg.out / CHECKPOINT_FILE).unlink(missing_ok=True)  # the model replaces the unfinished run
    spec = spec_for(cfg)

    calibration = None
    if cfg.min_peak_probability is None or cfg.min_lesion_ml is None:
        if cfg.sts_dir is not None and cfg.sts_validation and cfg.full_fov_dir is not None:
            report(f"choosing the lesion filters on {len(cfg.sts_validation)} validation sarcoma cases and the "
                   f"validation slab of the whole CT (slices {VALIDATION_SLICES[0]}-{VALIDATION_SLICES[1] - 1})")
            calibration = calibrate_on_real_ct(
                network, spec, sts_cases(cfg.sts_dir, holdout=False, validation=cfg.sts_validation, part="validation"),
                full_fov(cfg.full_fov_dir, "validation"), cfg.min_lesion_ml, cfg.min_peak_probability,
                cfg.voxel_threshold)
        else:
            report(f"choosing the lesion filters on {cfg.validation_phantoms} validation phantoms")
            calibration = calibrate_lesion_filters(network, spec, cfg.validation_phantoms, cfg.min_lesion_ml,
                                                   cfg.min_peak_probability)
        chosen = calibration["chosen"]
        cfg = _with_filters(cfg, chosen)
        spec = spec_for(cfg)
    report("evaluating on held-out phantoms and real cases")
    metrics = evaluate(network, spec, cfg,
                       seen={"training": record["real_training_cases"], "validation": list(cfg.sts_validation)})
    manifest = manifest_stub(cfg).model_copy(
        update={
            "weights": WeightsSpec(file="model.pt", sha256=hashlib.sha256(blob).hexdigest()),
            "training": {
                "recipe": "cross-entropy + per-patch tumor Dice (patches with tumor), AdamW, cosine LR with 50-iteration "
                          f"warm-up; random patches ({cfg.foreground_fraction:.0%} centred on a tumor, each tumor alike, "
                          f"{cfg.sts_fraction:.0%} from real cases); training phantoms carry 2-8 tumors each; "
                          f"mirroring along patch axes {list(cfg.mirror_axes)} (z, y, x), intensity jitter"
                          + ("; in-plane rotation, scaling and gamma (medseg.training.augment)" if cfg.augment else ""),
                "config": json.loads(cfg.model_dump_json(exclude={"out", "sts_dir", "full_fov_dir", *PER_CHUNK})),
                "full_fov": {"case": "LIDC-IDRI-0314", "training_slices": list(TRAIN_SLICES),
                             "validation_slices": list(VALIDATION_SLICES),
                             "measuring_slices": list(MEASURE_SLICES)} if cfg.full_fov_dir else None,
                "phantom_seeds": [cfg.phantom_seed0, cfg.phantom_seed0 + cfg.phantoms - 1],
                "real_training_cases": record["real_training_cases"],
                "real_validation_cases": list(cfg.sts_validation),
                "real_holdout_cases": list(STS_HOLDOUT) if cfg.sts_dir else [],
                "lesion_filter_calibration": calibration,
                **{k: v for k, v in record.items() if k != "real_training_cases"},
            },
            "metrics": metrics,
        }
    )
    manifest.dump(cfg.out)
    (cfg.out / "MODEL_CARD.md").write_text(model_card(manifest))
    return manifest


def evaluate(network: torch.nn.Module, spec: PipelineSpec, cfg: TrainConfig,
             progress: Callable[[str], None] | None = None, seen: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Held-out metrics through the full pipeline on the source grid; ``progress`` hears each case.

    ``seen`` names the real cases the model was trained (``"training"``) and its filters chosen
    (``"validation"``) on; with ``cfg.sts_dir`` they are measured the same way, apart, as
    ``real_sts_seen``: never a measure of the model, but how far the held-out score falls from
    what it does on cases it knows (the model card says what the gap means)."""
    report = progress or (lambda stage: None)
    if cfg.full_fov_dir is not None:  # before the phantoms, not after them
        require_full_fov(cfg.full_fov_dir)
    if cfg.sts_dir is not None:
        require_holdout(cfg.sts_dir)
    results: dict = {}
    cases = []
    for i in range(cfg.holdout_phantoms):
        report(f"phantom {i + 1} of {cfg.holdout_phantoms}")
        ph = generate_phantom(HOLDOUT_PHANTOM_SEED0 + i)
        out = segment(ph.image, network, spec)
        cases.append(evaluate_case(out.mask.array, ph.truth.array, ph.image.voxel_volume_ml))
    if cases:
        results["holdout_phantoms"] = {
            "seeds": [HOLDOUT_PHANTOM_SEED0, HOLDOUT_PHANTOM_SEED0 + cfg.holdout_phantoms - 1],
            **summarize(cases),
            "per_study_dice": {str(HOLDOUT_PHANTOM_SEED0 + i): round(c.dice, 4) for i, c in enumerate(cases)},
        }
    if cfg.full_fov_dir is not None:
        report("the whole chest CT's measuring slab")
        results["full_fov_measure"] = measure_full_fov(network, spec, cfg.full_fov_dir)
    if cfg.sts_dir is None:
        return results
    per_case, tumor_ml, lesions = _score_sts(network, spec, sts_cases(cfg.sts_dir, holdout=True), "held-out", report)
    results["holdout_real_sts"] = {
        **_dice_summary(per_case),
        # the expert's tumor volume: where the model fails by size (the model card lists it)
        "per_case_tumor_ml": tumor_ml,
        # the same detection rule as reviews (>= 10 % of a tumor's voxels called): what the
        # lesion-sensitivity SLOs of a real-CT model are compared with
        "lesion_sensitivity": round(sum(hit for _, hit in lesions) / len(lesions), 4) if lesions else None,
        "lesion_sensitivity_ci95": proportion_ci(sum(hit for _, hit in lesions), len(lesions),
                                                 REPORT_CONFIDENCE).interval(),
        "lesion_sensitivity_ge_10mm": _sensitivity([hit for d, hit in lesions if d >= 10.0]),
    }
    known = {part: named_sts_cases(cfg.sts_dir, names) for part, names in (seen or {}).items() if names}
    if known:
        results["real_sts_seen"] = {
            part: _dice_summary(_score_sts(network, spec, found, part, report)[0]) for part, found in known.items()}
    return results


def score_run(out: Path, sts_dir: Path | None = None, full_fov_dir: Path | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """An unfinished run (``out/checkpoint.pt``) scored as its end would be: the lesion filters chosen
    on its validation sarcomas and slab, then Dice on its validation and its training cases
    (``real_sts_seen``). Never on the held-out cases: when to stop a run, or which checkpoint to
    keep, is a choice, and choices are made on validation data. ``sts_dir`` and ``full_fov_dir``
    replace the folders the run recorded (they may lie elsewhere on this machine)."""
    report = progress or (lambda stage: None)
    payload = read_checkpoint(out)
    if payload is None:
        raise TrainingError(f"{out}: no {CHECKPOINT_FILE} of an unfinished run", code="train.no_checkpoint")
    folders = {k: v for k, v in (("sts_dir", sts_dir), ("full_fov_dir", full_fov_dir)) if v is not None}
    cfg = TrainConfig.model_validate({**payload["config"], "out": out, **folders})
    if cfg.sts_dir is None or not cfg.sts_validation or cfg.full_fov_dir is None:
        raise TrainingError(f"{out}: the run has no real validation cases and whole CT to be scored on",
                            code="train.no_validation_cases")
    require_validation(cfg.sts_dir, cfg.sts_validation)
    require_full_fov(cfg.full_fov_dir)
    network = build_network(manifest_stub(cfg))
    network.load_state_dict(payload["network"])
    network.eval()
    report("choosing the lesion filters on the validation cases")
    calibration = calibrate_on_real_ct(
        network, spec_for(cfg), sts_cases(cfg.sts_dir, holdout=False, validation=cfg.sts_validation, part="validation"),
        full_fov(cfg.full_fov_dir, "validation"))
    chosen = calibration["chosen"]
    spec = spec_for(_with_filters(cfg, chosen))
    training = sts_cases(cfg.sts_dir, holdout=False, validation=cfg.sts_validation)
    return {"iteration": payload["iteration"], "trained_minutes": round(payload["train_seconds"] / 60, 1),
            "recipe": {"augment": cfg.augment, "minutes": cfg.minutes, "seed": cfg.seed},
            "chosen": chosen, "whole_ct_false_positive_budget": calibration["whole_ct_false_positive_budget"],
            "real_sts_seen": {"training": _dice_summary(_score_sts(network, spec, training, "training", report)[0]),
                              "validation": _dice_summary(calibration["per_case_dice"])}}


def borrowed_filters(source: ModelManifest) -> dict:
    """The ``TrainConfig`` fields of ``--filters-from``: the voxel threshold and lesion filters that
    ``source`` chose on its real validation cases, and whose they are. A version whose filters were
    chosen on phantoms, or given, has nothing chosen on real cases to lend (``train.invalid``)."""
    calibration = source.training.get("lesion_filter_calibration") or {}
    if not calibration.get("validation_cases"):
        raise TrainingError(f"--filters-from {source.name}/{source.version}: its lesion filters were not chosen on real "
                            "validation cases", code="train.invalid")
    return {"voxel_threshold": source.postprocess.voxel_threshold, "min_lesion_ml": source.postprocess.min_lesion_ml,
            "min_peak_probability": source.postprocess.min_peak_probability,
            "filters_from": f"{source.name}/{source.version}"}


def _with_filters(cfg: TrainConfig, chosen: dict) -> TrainConfig:
    """``cfg`` with the lesion filters a calibration chose (a phantom calibration keeps the argmax)."""
    return cfg.model_copy(update={"min_peak_probability": chosen["min_peak_probability"],
                                  "min_lesion_ml": chosen["min_lesion_ml"],
                                  "voxel_threshold": chosen.get("voxel_threshold", 0.5)})


def _score_sts(network: torch.nn.Module, spec: PipelineSpec, cases: list, part: str,
               report: Callable[[str], None]) -> tuple[dict[str, float], dict[str, float], list]:
    """Each case's Dice and expert tumor volume (mL), and every expert lesion as (diameter, found)."""
    per_case, tumor_ml, lesions = {}, {}, []
    for name, image, truth in cases:
        report(f"{part} sarcoma {name}")
        out = segment(image, network, spec)
        case = evaluate_case(out.mask.array, truth.array, image.voxel_volume_ml)
        per_case[name], lesions = case.dice, lesions + case.reference_lesions
        tumor_ml[name] = round(float((truth.array > 0).sum()) * image.voxel_volume_ml, 1)
    return per_case, tumor_ml, lesions


def _dice_summary(per_case: dict[str, float]) -> dict:
    dice = list(per_case.values())
    return {"cases": len(dice),
            "mean_dice": round(float(np.mean(dice)), 4) if dice else None,
            "mean_dice_ci95": mean_ci(dice, REPORT_CONFIDENCE).interval(),
            "min_dice": round(min(dice), 4) if dice else None,
            "per_case_dice": {k: round(v, 4) for k, v in per_case.items()}}


def _sensitivity(hits: list[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def measure_full_fov(network: torch.nn.Module, spec: PipelineSpec, root: Path) -> dict:
    """False-positive lesions on the measuring slab of the whole CT (never trained on), and the nodule."""
    image, truth = full_fov(root, "measure")
    out = segment(image, network, spec)
    nodule = truth.array > 0
    components, count = ndimage.label(out.mask.array > 0, structure=np.ones((3, 3, 3), bool))
    hits = set(np.unique(components[nodule]).tolist()) - {0}
    false = [i for i in range(1, count + 1) if i not in hits]
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    case = evaluate_case(out.mask.array, truth.array, image.voxel_volume_ml)
    return {"slices": list(MEASURE_SLICES), "false_positive_lesions": len(false),
            "false_positive_ml": round(float(sum(sizes[i] for i in false)) * image.voxel_volume_ml, 3),
            "nodule_found": bool(hits), "nodule_dice": round(case.dice, 4),
            "inference_s": round(out.timings.get("inference_s", 0.0), 1)}


def manifest_stub(cfg: TrainConfig) -> ModelManifest:
    return ModelManifest(
        name=cfg.name,
        version=cfg.version,
        description="3D U-Net for CT tumor segmentation (demonstration model trained on synthetic phantoms"
                    + (" and real soft-tissue sarcoma CT)" if cfg.sts_dir and cfg.sts_fraction > 0 else ")"),
        intended_use="Demonstration and integration testing only. NOT FOR CLINICAL USE.",
        architecture=ArchitectureSpec(
            name="UNet",
            args={
                "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": list(cfg.channels),
                "strides": [2] * (len(cfg.channels) - 1), "num_res_units": cfg.res_units, "norm": cfg.norm,
            },
        ),
        input=InputSpec(spacing_xyz_mm=cfg.spacing_xyz_mm, window_hu=cfg.window_hu, roi_size_zyx=cfg.patch_zyx),
        labels=(TUMOR_LABEL,),
        inference={"roi_size_zyx": cfg.inference_roi_zyx, "flip_check": cfg.flip_check, "flip_check_budget": 1.0},
        postprocess={"min_lesion_ml": 0.05 if cfg.min_lesion_ml is None else cfg.min_lesion_ml,
                     "min_peak_probability": cfg.min_peak_probability or 0.0, "body_mask": True,
                     "voxel_threshold": cfg.voxel_threshold or 0.5},
        weights=WeightsSpec(file="model.pt", sha256="0" * 64),
    )
