"""`medseg train` and `medseg evaluate`: the demonstration model's training and held-out measurement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medseg.app.cli.common import err, output_folder, progress, stdout


def train(
    out: Path = typer.Option(..., "--out", "-o", help="model folder to write, e.g. models/ct-tumor/1.0.1"),
    sts_dir: Optional[Path] = typer.Option(None, help="real STS cases (../shared/data/sts-ct): held-out ones are evaluated"),
    sts_fraction: float = typer.Option(0.0, min=0.0, max=1.0, help="share of training patches from the other real cases"),
    sts_validation: bool = typer.Option(False, "--sts-validation", help="keep STS_VALIDATION out of training "
                                        "(to choose the recipe and filters on)"),
    full_fov_dir: Optional[Path] = typer.Option(
        None, help="the whole chest CT (../shared/data/full-fov-ct): negatives from its training slab, "
                   "false positives measured on the rest"),
    full_fov_fraction: float = typer.Option(0.0, min=0.0, max=1.0, help="share of patches from its training slab"),
    iterations: int = typer.Option(20000, min=1, help="upper bound; --minutes usually ends the run first"),
    minutes: float = typer.Option(28.0, min=0.1, help="time budget for the whole run"),
    phantoms: int = typer.Option(64, min=0, help="training phantoms"),
    holdout_phantoms: int = typer.Option(20, min=0),
    validation_phantoms: int = typer.Option(40, min=1, help="phantoms (seeds from 800000) that choose the lesion filters"),
    flip_check: bool = typer.Option(True, help="re-predict candidate lesions on the 8 axis flips of their window"),
    seed: int = typer.Option(0, min=0),
    version: str = typer.Option("1.0.0"),
    name: str = typer.Option("ct-tumor"),
    patch_zyx: tuple[int, int, int] = typer.Option((32, 64, 64), help="training patch (slices, rows, columns) on "
                                                  "the model grid; also the inference window"),
    batch_size: int = typer.Option(8, min=1),
    augment: bool = typer.Option(False, help="rotate, scale and gamma-change a share of the patches "
                                             "(medseg.training.augment)"),
    filters_from: Optional[str] = typer.Option(
        None, help="a version (folder or <name>/<version>) whose voxel threshold and lesion filters, chosen on its "
                   "validation cases, this run takes: the final model trained on those cases too"),
    chunk_minutes: Optional[float] = typer.Option(
        None, min=0.1, help="stop after this long with OUT/checkpoint.pt (resumable); --minutes is the whole budget"),
    resume: bool = typer.Option(False, "--resume", help="continue OUT/checkpoint.pt with the recipe recorded in it "
                                                        "(the recipe options given here are not used)"),
) -> None:
    """Train the demonstration model on CPU and write weights, manifest.json and MODEL_CARD.md."""
    from medseg.training.config import STS_VALIDATION, TrainConfig
    from medseg.training.train import train as run

    output_folder(out)
    borrowed = {} if resume or filters_from is None else _filters_from(filters_from, sts_validation)
    config = TrainConfig(out=out, sts_dir=sts_dir, sts_fraction=sts_fraction, full_fov_dir=full_fov_dir,
                         sts_validation=STS_VALIDATION if sts_validation else (),
                         full_fov_fraction=full_fov_fraction, iterations=iterations, minutes=minutes, phantoms=phantoms,
                         holdout_phantoms=holdout_phantoms, validation_phantoms=validation_phantoms, flip_check=flip_check, seed=seed,
                         version=version, name=name, chunk_minutes=chunk_minutes, patch_zyx=patch_zyx,
                         batch_size=batch_size, augment=augment, **borrowed)
    manifest = run(config, report=lambda line: err.print(line), resume=resume)
    if manifest is not None:
        stdout.print(json.dumps(manifest.metrics, indent=2))


def _filters_from(source: str, sts_validation: bool) -> dict:
    from medseg.config import get_settings
    from medseg.core.exceptions import TrainingError
    from medseg.models.manifest import ModelManifest
    from medseg.training.release import borrowed_filters

    if sts_validation:  # nothing left to choose on them: they would be kept out of training for nothing
        raise TrainingError("--filters-from takes the filters chosen on another version's validation cases; "
                            "--sts-validation would keep cases out of training for nothing", code="train.invalid")
    return borrowed_filters(ModelManifest.load(get_settings().model_dir(source)))


def evaluate(
    model: Optional[str] = typer.Option(None, help="model folder or <name>/<version>"),
    phantoms: Optional[int] = typer.Option(
        None, min=0, help="held-out phantoms (seeds from 900000); default 20, or 0 with --cases"),
    sts_dir: Optional[Path] = typer.Option(
        None, help="real STS cases: the held-out ones measure the model; its own training and validation "
                   "cases are measured apart (real_sts_seen)"),
    full_fov_dir: Optional[Path] = typer.Option(
        None, help="the whole chest CT: false-positive lesions on its measuring slab (never trained on)"),
    cases: Optional[Path] = typer.Option(
        None, help="the site's own labelled cases: one folder per case with image.nii.gz and mask.nii.gz "
                   "(or CT_image.nii.gz and CT_mask.nii.gz), or with a DICOM series and its reference SEG; "
                   "any model, a MONAI bundle's too"),
    write_metrics: bool = typer.Option(False, help="record the measured metrics in manifest.json and MODEL_CARD.md"),
    run_dir: Optional[Path] = typer.Option(
        None, "--run", help="an unfinished `medseg train` run (its folder with checkpoint.pt): filters chosen on its "
                            "validation cases, Dice on them and on its training cases, never on held-out ones"),
) -> None:
    """Measure a model on held-out phantoms, held-out real cases or the site's own cases, through
    the full pipeline; or score an unfinished training run on its own validation and training cases."""
    if run_dir is not None:
        _score_run(run_dir, sts_dir, full_fov_dir, other=bool(model or cases or write_metrics or phantoms))
        return
    from medseg.config import get_settings
    from medseg.models.store import load_model
    from medseg.quality.acceptance import evaluate_cases
    from medseg.training.config import TrainConfig
    from medseg.training.model_card import model_card
    from medseg.training.release import evaluate as run

    settings = get_settings()
    model_dir = settings.model_dir(model)
    loaded = load_model(model_dir)
    phantoms = phantoms if phantoms is not None else (0 if cases else 20)
    config = TrainConfig(out=Path("."), holdout_phantoms=phantoms, sts_dir=sts_dir, full_fov_dir=full_fov_dir)
    with progress("evaluating") as stage:
        site = (evaluate_cases(loaded, cases, progress=stage, rules=settings.selection,
                               tolerances=settings.geometry) if cases else None)
        held_out = phantoms or sts_dir or full_fov_dir  # medseg's own held-out sets: its own models only
        trained = loaded.manifest.training  # its own training and validation cases, measured apart
        seen = {"training": trained.get("real_training_cases", []), "validation": trained.get("real_validation_cases", [])}
        metrics = run(loaded.network, loaded.manifest.pipeline_spec(), config, progress=stage,
                      seen=seen) if held_out else {}
    if site is not None:
        metrics["site_cases"] = site
    stdout.print(json.dumps(metrics, indent=2))
    if write_metrics:  # a <name>/<version> is written in the site's model store, never the shipped copy
        if not Path(model or settings.default_model).is_dir():
            model_dir = settings.model_catalog().writable(loaded.manifest.name, loaded.manifest.version)
        if site is not None:  # case folders may be named after patients: the manifest travels, names do not
            metrics["site_cases"] = {k: v for k, v in site.items() if k != "per_case"}
        # measured here over what was measured before: an acceptance run keeps the held-out metrics
        manifest = loaded.manifest.model_copy(update={"metrics": {**loaded.manifest.metrics, **metrics}})
        manifest.dump(model_dir)
        if "recipe" in manifest.training:  # the card of a model medseg trained; a bundle keeps its authors' docs
            (model_dir / "MODEL_CARD.md").write_text(model_card(manifest))



def _score_run(run_dir: Path, sts_dir: Optional[Path], full_fov_dir: Optional[Path], other: bool) -> None:
    from medseg.core.exceptions import InputError
    from medseg.training.release import score_run

    if other:  # a run is not a model version: nothing to record, no held-out set to measure
        raise InputError("--run scores an unfinished training run alone: give it without --model, --cases, "
                         "--phantoms or --write-metrics", code="evaluate.run_alone")
    with progress("scoring the run") as stage:
        result = score_run(run_dir, sts_dir=sts_dir, full_fov_dir=full_fov_dir, progress=stage)
    stdout.print(json.dumps(result, indent=2))
