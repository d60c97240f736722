"""`medseg models list | show V | promote V --reason | rollback [--to V] --reason | reference V`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from medseg.app.cli.common import ConfigOpt, NameOpt, cli_actor, model_name, open_context

models_app = typer.Typer(no_args_is_help=True, help="Model registry: list, promote, roll back (with the gate).")
out = Console()


@models_app.command("list")
def list_cmd(name: Optional[str] = NameOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Versions in the model store, which one is active, and their gate reference."""
    from medseg.models.manifest import ModelManifest

    ctx = open_context(config, reading=True)
    registry = ctx.registry
    model = model_name(ctx, name)
    active = registry.active(model)
    table = Table("version", "active", "sha256", "reference", "held-out mean Dice", "description")
    for v in registry.versions(model):
        m = ModelManifest.load(registry.path(model, v))
        table.add_row(v, "*" if v == active else "", m.weights.sha256[:12], "yes" if m.reference else "no",
                      _held_out(m.metrics), m.description[:50])
    out.print(table)


def _held_out(metrics: dict) -> str:
    """Held-out mean Dice on real sarcomas and on phantoms, where measured: a model is judged on its
    own domain (ct-tumor 3.0.0, trained on real CT, scores 0.005 on phantoms it never saw)."""
    return ", ".join(f"{label} {metrics[key]['mean_dice']}" for key, label in
                     (("holdout_real_sts", "real CT"), ("holdout_phantoms", "phantoms"))
                     if metrics.get(key, {}).get("mean_dice") is not None)


@models_app.command()
def show(version: str = typer.Argument(...), name: Optional[str] = NameOpt, config: Optional[Path] = ConfigOpt) -> None:
    """One version's manifest summary and the registry history."""
    from medseg.models.manifest import ModelManifest

    ctx = open_context(config, reading=True)
    registry = ctx.registry
    model = model_name(ctx, name)
    m = ModelManifest.load(registry.path(model, version))
    print(json.dumps({"model": m.ref, "active": registry.active(model) == version, "sha256": m.weights.sha256,
                      "task": m.task.model_dump(), "architecture": m.architecture.model_dump(),
                      "input": m.input.model_dump(mode="json"),
                      "inference": m.inference.model_dump(mode="json", include=(
                          {"engine", "bundle_overrides", "bundle_dropped_args", "bundle_files"}
                          if m.inference.engine == "monai-bundle" else None)),
                      "reference": m.reference.model_dump(mode="json") if m.reference else None,
                      "metrics": m.metrics,
                      "labels": [{"value": label.value, "name": label.name,
                                  "category": label.category.model_dump(), "type": label.type.model_dump()}
                                 for label in m.labels],
                      "provenance": m.provenance.model_dump(mode="json") if m.provenance else None,
                      "history": [h.as_dict() for h in registry.history(model)]}, indent=2, default=str))


@models_app.command()
def promote(version: str = typer.Argument(...), reason: str = typer.Option(..., help="why (recorded)"),
            override_breach: Optional[str] = typer.Option(
                None, "--override-breach", help="promote although the version's own reviews breach an SLO: why (audited)"),
            name: Optional[str] = NameOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Make a version active after it passes the gate; new jobs use it."""
    from medseg.app import operations as model_ops

    ctx = open_context(config)
    registry = ctx.registry
    model = model_name(ctx, name)
    previous, new, result = model_ops.promote(registry, ctx.auditor, model, version, actor=cli_actor(), reason=reason,
                                              monitor=ctx.monitor, override_breach=override_breach)
    print(f"gate passed: {result['reason']} (Dice {result['dice']:.4f})")
    print(f"{model}: {previous or '-'} -> {new} is now active")


@models_app.command()
def rollback(reason: str = typer.Option(..., help="why (recorded)"),
             to: Optional[str] = typer.Option(None, "--to", help="version (default: the previously active one)"),
             reprocess: bool = typer.Option(False, "--reprocess", help="re-run the affected studies on the target "
                                            "version; their new SEGs go out as new series"),
             name: Optional[str] = NameOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Switch back (gate first), list every study the rolled-back version segmented since it became
    active, and put them on the re-review worklist."""
    from medseg.app import operations as model_ops

    ctx = open_context(config)
    registry = ctx.registry
    model = model_name(ctx, name)
    r = model_ops.rollback(registry, ctx.jobs, ctx.auditor, model, to=to, actor=cli_actor(), reason=reason,
                           reprocess=reprocess, alerts=ctx.monitor.alerts)
    print(f"gate passed: {r.gate['reason']} (Dice {r.gate['dice']:.4f})")
    if r.requeued_not_started:
        print(f"{r.requeued_not_started} queued job(s) that had not started will run on {r.active}")
    print(f"{model}: {r.rolled_back} -> {r.active} is now active. "
          f"Studies segmented by {r.rolled_back} since it became active: {len(r.affected)}")
    for a in r.affected:
        print(f"  study {a['study_uid']} accession {a['accession'] or '-'} series {a['series_uid']} job {a['job_id']} "
              f"state {a['state']} SEG {a['seg_sop_uid'] or '-'} reviewed {'yes' if a['reviewed'] else 'no'}")
    print(f"{len(r.affected)} study(ies) put on the re-review worklist (medseg review worklist)")
    for p in r.reprocessed:
        print(f"  reprocessing study {p['study_uid']} on {r.active}: job {p['job_id']}" if p["job_id"]
              else f"  study {p['study_uid']}: {p['note']}")


@models_app.command()
def reference(version: str = typer.Argument(...), name: Optional[str] = NameOpt,
              case: Optional[Path] = typer.Option(None, "--case", exists=True, file_okay=False,
                                                  help="a real case (CT_image.nii.gz + CT_mask.nii.gz) instead of "
                                                       "the phantom, e.g. tests/data/sts-ct/STS_006"),
              source: Optional[str] = typer.Option(None, help="where the case comes from (licence, attribution)"),
              config: Optional[Path] = ConfigOpt) -> None:
    """Record a version's result on the fixed phantom (or --case) as the reference its promotions
    must reproduce (refused when a lesion model finds none of the truth's tumors; audited either way)."""
    from medseg.app import operations as model_ops

    ctx = open_context(config)
    model = model_name(ctx, name)
    ref = model_ops.record_reference(ctx.registry, ctx.auditor, model, version, actor=cli_actor(), case=case,
                                     source=source)
    truth = f"; against the truth: Dice {ref.truth_dice:.4f}, tumors found {ref.truth_lesions_found}" \
        if ref.truth_dice is not None else ""
    print(f"{model}/{version}: reference recorded ({ref.mask_file}, sha256 {ref.mask_sha256[:12]}...){truth}")


@models_app.command("import-bundle")
def import_bundle_cmd(path: Path = typer.Argument(..., help="MONAI bundle folder"),
                      name: Optional[str] = typer.Option(None, help="model name (default: from the folder name)"),
                      version: Optional[str] = typer.Option(None, help="version (default: metadata.json version)"),
                      trust: bool = typer.Option(False, "--trust", help="allow MONAI '$' expressions (runs their code)"),
                      override: list[str] = typer.Option(
                          [], "--override", metavar="ID=VALUE",
                          help="set a config value as `monai.bundle run --ID VALUE` does (repeatable; kept in the "
                               "version), e.g. dints_space#device=cpu"),
                      task: Optional[str] = typer.Option(
                          None, help="what the model segments, for SEG titles and summaries (default: from its labels)"),
                      config: Optional[Path] = ConfigOpt) -> None:
    """Import a MONAI bundle as a model version that runs the bundle's own pipeline, with a gate reference."""
    from medseg.models.bundle_checks import check_metadata, parse_override

    overrides = dict(parse_override(item) for item in override)  # refused at once, before torch and MONAI load
    check_metadata(path)
    from medseg.models.bundle import import_bundle

    ctx = open_context(config)
    m = import_bundle(path, ctx.registry.catalog.site, name=name, version=version, trust=trust, overrides=overrides,
                      task_title=task)
    uncoded = list(m.provenance.uncoded_labels) if m.provenance else []
    ctx.auditor("model.imported", actor=cli_actor(), model=m.ref, sha256=m.weights.sha256, trusted=trust,
            source=m.training.get("source"), uncoded_labels=uncoded or None, overrides=overrides or None,
            dropped_args=list(m.inference.bundle_dropped_args) or None)
    for cid, why in m.training.get("dropped_args", {}).items():
        print(f"note: {cid} left out: {why}", file=sys.stderr)
    if uncoded:
        print(f"warning: no SNOMED CT code found for {len(uncoded)} label(s), coded as the generic "
              f"'Anatomical Structure' (review before promoting): {', '.join(uncoded[:10])}"
              + (" ..." if len(uncoded) > 10 else ""), file=sys.stderr)
    print(f"imported {m.ref} ({m.architecture.name}, {m.task.title} segmentation, {len(m.labels)} label(s): "
          f"{', '.join(label.name for label in m.labels[:6])}{' ...' if len(m.labels) > 6 else ''}); promote it with `medseg models promote {m.version} "
          f"--name {m.name} --reason ...`")


@models_app.command("shadow")
def shadow_cmd(version: Optional[str] = typer.Argument(None, help="candidate version (omit with --off)"),
               off: bool = typer.Option(False, "--off", help="stop shadowing"),
               reason: str = typer.Option(..., help="why (recorded)"),
               name: Optional[str] = NameOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Run a candidate version on live studies after the active one: results stored, compared, never sent."""
    from medseg.core.exceptions import RegistryError

    ctx = open_context(config)
    registry = ctx.registry
    model = model_name(ctx, name)
    if off == (version is not None):
        raise RegistryError("give a version, or --off", code="registry.bad_arguments")
    registry.set_shadow(model, None if off else version, actor=cli_actor(), reason=reason)
    print(f"{model}: shadow {'off' if off else version}")


@models_app.command()
def compare(candidate: str = typer.Argument(..., help="candidate version"), name: Optional[str] = NameOpt,
            config: Optional[Path] = ConfigOpt) -> None:
    """Agreement of a shadowed candidate with the active version over the studies it ran on."""

    ctx = open_context(config, reading=True)
    model = model_name(ctx, name)
    print(json.dumps(ctx.shadow.compare(f"{model}/{candidate}"), indent=2))
