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
    wait: bool = typer.Option(False, "--wait", help="score it here and print the scores, the SLOs and what the "
                              "fallback policy did (by default it is scored in the background)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Store a review at once; it is scored, and the SLOs evaluated (fallback policy included), in
    the background (a running `medseg serve`, or a scorer started here), unless --wait."""
    from medseg.core.exceptions import MedsegError

    if mask is not None and not mask.is_file():
        raise MedsegError(f"mask file not found: {mask}", code="review.invalid")
    ctx = open_context(config)
    r = ctx.reviews.submit(study, mask=mask.read_bytes() if mask else None, accepted=accepted, door="cli",
                           submitted_by=cli_actor(), reviewer=reviewer, series_uid=series).review
    print(f"review {r.id} received: {r.model}, study {r.study_uid}")
    if not wait:
        _score_in_background(config)
        print(f"  scoring in the background; `medseg review show {r.id}` shows the result")
        return
    for outcome in ctx.reviews.score_pending([r.id]):
        _print_outcome(ctx.monitor, outcome)


def _score_in_background(config: Optional[Path]) -> None:
    """A detached `medseg review score` (its own session: it outlives this command and a closed
    terminal), as git starts its background gc. A running `medseg serve` would also pick the
    review up within seconds; the atomic claim makes sure only one of them scores it."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "medseg", "review", "score", *(["--config", str(config)] if config else [])]
    subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def _print_outcome(monitor, outcome) -> None:
    r = outcome.review
    if r.status != "scored":
        print(f"review {r.id}: {r.status}: {r.note}")
        return
    print(f"review {r.id}: {r.model}  Dice {number(r.dice)}  FN rate {number(r.fn_rate)}  lesions "
          f"{r.detected_lesions}/{r.reference_lesions} detected  HD95 {number(r.hd95_mm, 1)} mm")
    for lesion in r.scores.get("missed", []):
        print(f"  missed lesion: {lesion['diameter_mm']} mm, {lesion['volume_ml']} mL at LPS {lesion['centroid_lps_mm']}")
    for s in outcome.slos:
        print(f"  SLO {s.slo}: {'BREACHED' if s.breached else 'ok'} ({s.why})")
        alert = monitor.alerts.latest("slo", s.slo, r.model) if s.breached else None
        if alert is not None and alert.action:  # e.g. the fallback policy's rollback and its target
            print(f"    alert {alert.id} ({alert.policy}): {alert.action}")


@review_app.command()
def score(config: Optional[Path] = ConfigOpt) -> None:
    """Score every received review now and evaluate the SLOs (what `medseg serve` does in the background)."""
    ctx = open_context(config)
    outcomes = ctx.reviews.score_pending()
    ctx.monitor.alerts.deliver_webhooks()  # one attempt now; a running `medseg serve` retries the rest
    for outcome in outcomes:
        _print_outcome(ctx.monitor, outcome)
    print(f"{len(outcomes)} review(s) scored or rejected")


@review_app.command()
def show(review_id: int = typer.Argument(..., help="review number"), config: Optional[Path] = ConfigOpt) -> None:
    """One review: waiting, its scores and its model's SLO states, or why it was rejected."""
    from medseg.core.exceptions import MedsegError
    from medseg.quality.intake import ReviewOutcome

    ctx = open_context(config, reading=True)
    row = ctx.monitor.store.review(review_id)
    if row is None:
        raise MedsegError(f"no review {review_id}", code="review.not_found")
    if row.status in ("received", "scoring"):
        print(f"review {row.id}: {row.status} (waiting to be scored), {row.model}, study {row.study_uid}")
        return
    _print_outcome(ctx.monitor, ReviewOutcome(row, ctx.monitor.slo_status(row.model)[1] if row.status == "scored" else []))


@review_app.command("list")
def list_reviews(model: Optional[str] = typer.Option(None, help="NAME:VERSION"),
                 status: str = typer.Option("scored", help="scored | received | rejected | unmatched (corrected "
                                            "SEGs that matched no result)"),
                 config: Optional[Path] = ConfigOpt) -> None:
    """Reviews, newest first."""
    from medseg.quality.report import model_ref
    from medseg.quality.states import ReviewStatus

    if status not in set(ReviewStatus):
        raise typer.BadParameter(f"must be one of {', '.join(ReviewStatus)}", param_hint="--status")
    monitor = open_context(config, reading=True).monitor
    rows = monitor.store.reviews(model=model_ref(model), status=ReviewStatus(status), limit=200)
    for r in rows:
        by = r.reviewer or r.submitted_by  # the reviewer named; else who submitted (cli:<user>, an AE, api:<principal>)
        print(f"{r.created_at:%Y-%m-%d %H:%M}  #{r.id}  {r.model or '-'}  study {r.study_uid}  by {by} via {r.door}"
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
