"""MODEL_CARD.md of a trained model, written from its manifest: what it was trained on, what it was
chosen and measured on, where it fails, and that it is not for clinical use."""

from __future__ import annotations

import json

from medseg.models.manifest import ModelManifest


def model_card(m: ModelManifest) -> str:
    return _real_ct_card(m) if m.training.get("full_fov") else _phantom_card(m)


def _real_ct_card(m: ModelManifest) -> str:
    t, metrics = m.training, m.metrics
    cfg = t.get("config", {})
    fov = t["full_fov"]
    sts = metrics.get("holdout_real_sts", {})
    measure = metrics.get("full_fov_measure", {})
    phantoms = metrics.get("holdout_phantoms", {})
    calibration = t.get("lesion_filter_calibration") or {}
    images = len(t.get("real_training_cases", [])) + 1
    per_case = ", ".join(f"{k} {v:.2f}" for k, v in sts.get("per_case_dice", {}).items())
    nodule = ("found (Dice {:.2f})".format(measure["nodule_dice"]) if measure.get("nodule_found")
              else "missed") if measure else "not measured"
    return f"""# {m.name} {m.version} — model card

**Not for clinical use.** A demonstration model, trained on a CPU in {t.get('wall_time_s', 0) / 3600:.1f} hours
on {images} real CT images. It has not been validated on clinical data, for any population, scanner or
protocol, and must not inform any diagnosis. Every SEG it produces says it is AI-generated and
needs review.

**What it is.** A MONAI `{m.architecture.name}` (channels {m.architecture.args.get('channels')}, batch norm) that labels
tumor voxels in CT at {m.input.spacing_xyz_mm} mm (x, y, z), HU window {m.input.window_hu}, sliding
windows of {m.input.roi_size_zyx} (z, y, x) voxels ({_mm(m)} mm), inside a body mask
(largest component above -500 HU, holes filled), with a bounded flip check, foreground above a
probability of {m.postprocess.voxel_threshold} and lesion filters (at least {m.postprocess.min_lesion_ml} mL, peak probability at
least {m.postprocess.min_peak_probability}), all three {_whose_filters(cfg)}.

**Trained on** ({t.get('iterations_run')} iterations in {t.get('chunks')} resumable chunks, batch {cfg.get('batch_size')}):
- {len(t.get('real_training_cases', []))} soft-tissue sarcomas of the extremities (TCIA Soft-tissue-Sarcoma, CT crops of
  5 cm around the tumor, expert GTV): {', '.join(t.get('real_training_cases', []))}; {cfg.get('sts_fraction', 0):.0%} of patches,
  half of them centred on the tumor.
- Tumor-free negatives from slices {fov['training_slices'][0]}-{fov['training_slices'][1] - 1} of one whole chest CT ({fov['case']}, LIDC-IDRI:
  lung bases, liver dome, upper abdomen, table and air): {cfg.get('full_fov_fraction', 0):.0%} of patches, centred inside the
  body, half of them on hard negatives (voxels the network called tumor, mined every {cfg.get('mine_every')} iterations).
- {cfg.get('phantoms', 0)} synthetic phantoms.
Tumor types seen: soft-tissue sarcoma only. Body regions seen: limbs and limb girdles (the crops),
lower chest and upper abdomen (the negatives).

{_chosen_on(cfg, calibration, fov)}

**Measured on** (never trained or chosen on):
- {sts.get('cases', 0)} held-out sarcomas: mean Dice **{sts.get('mean_dice', '-')}** ({_ci(sts, 'mean_dice_ci95')}{per_case}).
- Slices {fov['measuring_slices'][0]}-{fov['measuring_slices'][1] - 1} of the whole CT (mid chest): **{measure.get('false_positive_lesions', '-')} false-positive
  lesion(s)** ({measure.get('false_positive_ml', '-')} mL); its one lung nodule (2.67 mL, >= 2 of 4 readers): {nodule}.
- {phantoms.get('studies', 0)} synthetic phantoms: mean Dice {phantoms.get('mean_dice', '-')}, {phantoms.get('false_positive_lesions_per_study', '-')} false-positive
  lesion(s) per study (phantoms were not trained on; their organs are not real anatomy).
{_fit(metrics)}
**Where it fails.** It has seen one tumor type in one setting. Expect it to miss or mis-outline
lung nodules (it never saw one), liver lesions, lymph nodes, bone and brain tumors, metastases,
and anything in anatomy it has not seen (head, neck, pelvis beyond the negatives, children), and
to be unreliable on contrast phases, scanners and reconstruction kernels unlike the {images} training
images. Its false-positive rate on whole CTs was measured on one patient.{_by_size(sts)}

**Reproduce.** `medseg train --out models/{m.name}/{m.version} --version {m.version} --phantoms {cfg.get('phantoms')}
--sts-dir ../shared/data/sts-ct --sts-fraction {cfg.get('sts_fraction')}{_validation_option(cfg)} --full-fov-dir ../shared/data/full-fov-ct
--full-fov-fraction {cfg.get('full_fov_fraction')} --minutes {cfg.get('minutes')} --iterations {cfg.get('iterations')} --patch-zyx {' '.join(map(str, cfg.get('patch_zyx', [])))}
--batch-size {cfg.get('batch_size')}{' --augment' if cfg.get('augment') else ''} --chunk-minutes M`, then `medseg train --out models/{m.name}/{m.version} --resume
--chunk-minutes M` until the budget is spent (the recipe, schedule, random state and mined
negatives are in the checkpoint). The budget is time, so expect close, not identical, weights.
{chr(10) + "**Amended.** " + t["amended"] + "." + chr(10) if t.get("amended") else ""}{_gate_reference(m)}
**Metrics** (full pipeline, source grid):
```json
{json.dumps(metrics, indent=2)}
```

Data: TCIA Soft-tissue-Sarcoma (Vallières et al. 2015, DOI 10.7937/K9/TCIA.2015.7GO2GSKS) and
LIDC-IDRI (Armato et al. 2011, DOI 10.1118/1.3528204), both CC BY 3.0.
"""


def _whose_filters(cfg: dict) -> str:
    source = cfg.get("filters_from")
    return (f"taken from {source}, which chose them on its validation sarcomas" if source
            else "chosen on the validation data below")


def _chosen_on(cfg: dict, calibration: dict, fov: dict) -> str:
    """Where the voxel threshold and lesion filters were chosen: this version's own validation data,
    or (``--filters-from``) another version's, whose validation cases this one trains on."""
    source = cfg.get("filters_from")
    if source:
        return f"""**Chosen on**: nothing of this version. Its voxel threshold and lesion filters are those
{source} chose on its validation sarcomas (its model card names them and gives the sweep); this version
trains on every sarcoma not held out, those included, so none is left to choose on. No held-out case
below was used for a choice of either version."""
    chosen = calibration.get("chosen", {})
    return f"""**Chosen on** (never trained on): the lesion filters on the validation sarcomas
{', '.join(calibration.get('validation_cases', []))} (mean Dice {chosen.get('mean_dice', '-')}) within a budget of
{calibration.get('whole_ct_false_positive_budget', '-')} false-positive lesions on slices {fov['validation_slices'][0]}-{fov['validation_slices'][1] - 1} of the whole CT
(apices, shoulders, base of the neck; {chosen.get('whole_ct_false_positives', '-')} with the chosen filters)."""


def _validation_option(cfg: dict) -> str:
    """The reproduce line's options for where the filters come from (3.0.0's card: ``--sts-validation``)."""
    if cfg.get("filters_from"):
        return f" --filters-from models/{cfg['filters_from']}"
    return " --sts-validation" if cfg.get("sts_validation") else ""


def _gate_reference(m: ModelManifest) -> str:
    ref = m.reference
    if ref is None or not ref.image_file:
        return ""
    return (f"\n**Promotion gate reference.** A real case, kept in this folder ({ref.image_file}, {ref.truth_file}; "
            f"the version's own result {ref.mask_file}, Dice {ref.truth_dice} against the expert mask, tumors found "
            f"{ref.truth_lesions_found}): {ref.source}.\n")


def _mm(m: ModelManifest) -> str:
    sx, sy, sz = m.input.spacing_xyz_mm
    z, y, x = m.input.roi_size_zyx
    return f"{z * sz:g} x {y * sy:g} x {x * sx:g}"


def _phantom_card(m: ModelManifest) -> str:
    metrics = json.dumps(m.metrics, indent=2)
    return f"""# {m.name} {m.version} — model card

**What it is.** {m.description}. A MONAI `{m.architecture.name}` ({m.architecture.args.get('channels')} channels)
that labels tumor voxels in CT, at {m.input.spacing_xyz_mm} mm (x, y, z), HU window {m.input.window_hu}.

**Not for clinical use.** It was trained on the CPU in minutes on synthetic phantoms
(`medseg phantom`) {"and a small set of real soft-tissue sarcoma CTs " if m.training.get("real_training_cases") else ""}to
exercise the product end to end. It has not been validated on clinical data and must not inform
any diagnosis. Every SEG it produces says it is AI-generated and needs review.

**Reproduce.** `medseg train --out models/{m.name}/{m.version} --version {m.version} --sts-dir ../shared/data/sts-ct
--iterations {m.training.get('iterations_run')} --minutes 600` with the config recorded in `manifest.json`
(`training.config`). The default run stops at its time budget, so the iteration count depends on
the machine; fixing `--iterations` as above runs as many iterations (the cosine learning-rate
schedule then follows the iteration count instead of the clock, so expect close, not identical,
weights). Phantom seeds {m.training.get('phantom_seeds')}
were used for training; held-out seeds and real cases are listed under `metrics`.
{chr(10) + "**Amended.** " + m.training["amended"] + "." + chr(10) if m.training.get("amended") else ""}
**Held-out metrics** (full pipeline, source grid; definitions in `medseg/core/scoring.py`):
```json
{metrics}
```

**Bringing a validated model.** Put a clinically validated network in `models/<name>/<version>/`
with a `manifest.json` of this schema (architecture, spacing, window, labels with SNOMED CT codes,
weights sha256), or import a MONAI bundle; the weights' sha256 is checked before they are loaded.
Real tumor data: soft-tissue sarcoma CT from TCIA (Vallières et al. 2015, CC BY 3.0; see
`tests/data/sts-ct/README.md`).
"""


def _by_size(sts: dict) -> str:
    """The held-out sarcomas from the smallest tumor up, each with its Dice (versions measured before
    the volumes were recorded: nothing)."""
    volumes, dice = sts.get("per_case_tumor_ml"), sts.get("per_case_dice", {})
    if not volumes:
        return ""
    ranked = sorted(volumes, key=volumes.get)
    cases = ", ".join(f"{name} {volumes[name]:g} mL: {dice[name]:.2f}" for name in ranked)
    return (f"\nMeasured, the held-out sarcomas by the expert's tumor volume, smallest first (Dice): {cases}. "
            f"{len(ranked)} cases are too few to give a size below which it fails; they show where it has missed.")


#: held-out mean Dice this far below the training cases' is a model that learned its cases, not the task
GENERALISATION_GAP = 0.15


def _fit(metrics: dict) -> str:
    """What it does on the sarcomas it was trained and chosen on, beside the held-out ones, and what
    the gap says (versions measured before these were recorded: nothing)."""
    seen, held_out = metrics.get("real_sts_seen", {}), metrics.get("holdout_real_sts", {})
    training, validation = seen.get("training", {}), seen.get("validation", {})
    if not training.get("cases") or held_out.get("mean_dice") is None:
        return ""
    line = (f"\n**Seen cases, for comparison** (not a measure of the model): on its {training['cases']} training "
            f"sarcomas mean Dice {training['mean_dice']:.2f} (lowest {training['min_dice']:.2f})")
    if validation.get("cases"):
        line += f", on its {validation['cases']} validation sarcomas {validation['mean_dice']:.2f}"
    line += f", on the {held_out['cases']} held-out {held_out['mean_dice']:.2f}. "
    if training["mean_dice"] - held_out["mean_dice"] > GENERALISATION_GAP:
        line += ("The network outlines the tumors it was trained on far better than unseen ones: it has learned "
                 "its training cases more than sarcoma. More iterations of the same recipe fit those cases "
                 "further without helping unseen ones; more, and more varied, training cases are what would "
                 "narrow the gap.")
    else:
        line += ("It does about as well on unseen sarcomas as on its training cases: it has not learned its "
                 "cases by heart; where both are low it underfits, and more training or a larger network "
                 "is what would help.")
    return line + "\n"


def _ci(metrics: dict, key: str) -> str:
    """``95 % CI a-b; `` where the metrics carry that interval (versions measured before they did not)."""
    interval = metrics.get(key)
    return f"95 % CI {interval[0]:.2f}-{interval[1]:.2f}; per case " if interval else ""
