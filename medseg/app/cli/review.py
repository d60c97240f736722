"""`medseg review submit | list | worklist`: radiologists' reviews and the re-review worklist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medseg.app.cli.common import ConfigOpt, cli_actor, number, open_context

review_app = typer.Typer(no_args_is_help=True, help="Radiologist reviews: submit corrections, the re-review worklist.")


@review_app.command()
def submit(
    study: str = typer.Option(..., "--study", help="StudyInstanceUID of the reviewed study"),
    mask: Optional[Path] = typer.Option(None, "--mask", help="corrected mask: DICOM SEG (.dcm) or NIfTI (.nii[.gz]) "
                                        "on the source series' grid"),
    accepted: bool = typer.Option(False, "--accepted", help="the AI result was accepted as is (no correction)"),
    reviewer: str = typer.Option("", "--reviewer", help="reviewer ID (not a patient identifier)"),
    series: Optional[str] = typer.Option(None, "--series", help="SeriesInstanceUID, when the study has several SEGs"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Score a review against our SEG, store it, and re-evaluate the SLOs (fallback policy included)."""
    from medseg.core.exceptions import MedsegError
    from medseg.quality.intake import ReviewIntake

    if mask is not None and not mask.is_file():
        raise MedsegError(f"mask file not found: {mask}", code="review.invalid")
    ctx = open_context(config)
    monitor = ctx.monitor
    service = ctx.settings.service
    intake = ReviewIntake(ctx.jobs, service.spool_dir, service.reviews_dir, ctx.auditor, monitor)
    outcome = intake.submit(study, mask=mask.read_bytes() if mask else None, accepted=accepted, door="cli",
                            submitted_by=cli_actor(), reviewer=reviewer, series_uid=series)
    monitor.alerts.deliver_webhooks()  # one attempt now; a running `medseg serve` retries the rest
    r = outcome.review
    print(f"review {r.id}: {r.model}  Dice {number(r.dice)}  FN rate {number(r.fn_rate)}  lesions "
          f"{r.detected_lesions}/{r.reference_lesions} detected  HD95 {number(r.hd95_mm, 1)} mm")
    for lesion in r.scores.get("missed", []):
        print(f"  missed lesion: {lesion['diameter_mm']} mm, {lesion['volume_ml']} mL at LPS {lesion['centroid_lps_mm']}")
    for s in outcome.slos:
        print(f"  SLO {s.slo}: {'BREACHED' if s.breached else 'ok'} ({s.why})")
        alert = monitor.alerts.latest("slo", s.slo, r.model) if s.breached else None
        if alert is not None and alert.action:  # e.g. the fallback policy's rollback and its target
            print(f"    alert {alert.id} ({alert.policy}): {alert.action}")


@review_app.command("list")
def list_reviews(model: Optional[str] = typer.Option(None, help="NAME:VERSION"),
                 unmatched: bool = typer.Option(False, "--unmatched", help="corrected SEGs that matched no result"),
                 config: Optional[Path] = ConfigOpt) -> None:
    """Reviews, newest first."""
    from medseg.quality.report import model_ref
    from medseg.quality.states import ReviewStatus

    monitor = open_context(config, reading=True).monitor
    rows = monitor.store.reviews(model=model_ref(model), status=ReviewStatus.UNMATCHED if unmatched else ReviewStatus.SCORED, limit=200)
    for r in rows:
        print(f"{r.created_at:%Y-%m-%d %H:%M}  #{r.id}  {r.model or '-'}  study {r.study_uid}  {r.door}:{r.submitted_by}"
              f"  Dice {number(r.dice)}  FN {number(r.fn_rate)}  {r.note}")
    print(f"{len(rows)} review(s)")


@review_app.command()
def worklist(config: Optional[Path] = ConfigOpt,
             fmt: str = typer.Option("table", "--format", help="table | json")) -> None:
    """Studies waiting for re-review (e.g. after a model rollback)."""

    ctx = open_context(config, reading=True)
    items = [i.as_dict() for i in ctx.worklist.open_items()]
    if fmt == "json":
        print(json.dumps(items, indent=1))
        return
    for i in items:
        print(f"{i['created_at'][:19]}  study {i['study_uid']}  job {i['job_id']}  {i['model']}  {i['reason']}")
    print(f"{len(items)} open item(s)")
