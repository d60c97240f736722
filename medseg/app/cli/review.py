"""`medseg review submit | list | worklist` and `medseg monitor report | alerts`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from medseg.app.cli.models import ConfigOpt, _actor, _open

review_app = typer.Typer(no_args_is_help=True, help="Radiologist reviews: submit corrections, the re-review worklist.")
monitor_app = typer.Typer(no_args_is_help=True, help="Quality monitoring: SLOs, drift, alerts, report.")
out = Console(width=None if sys.stdout.isatty() else 160)  # piped: do not wrap table cells at 80 columns


def _monitoring(config: Optional[Path]):
    from medseg.app.serve import build_monitor

    settings, registry, jobs, auditor = _open(config)
    return settings, jobs, auditor, build_monitor(settings, registry, jobs, auditor)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(e: dict) -> str:
    if e["value"] is None:
        return "-"
    if e["low"] is None:
        return f"{e['value']:.3f} (n={e['n']})"
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}] n={e['n']}"


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
    settings, jobs, auditor, monitor = _monitoring(config)
    data = Path(settings.service.data_dir)
    intake = ReviewIntake(jobs, data / "spool", data / "reviews", auditor, monitor)
    outcome = intake.submit(study, mask=mask.read_bytes() if mask else None, accepted=accepted, door="cli",
                            submitted_by=_actor(), reviewer=reviewer, series_uid=series)
    monitor.alerts.deliver_webhooks()  # one attempt now; a running `medseg serve` retries the rest
    r = outcome.review
    print(f"review {r.id}: {r.model}  Dice {_fmt(r.dice)}  FN rate {_fmt(r.fn_rate)}  lesions "
          f"{r.detected_lesions}/{r.reference_lesions} detected  HD95 {_fmt(r.hd95_mm, 1)} mm")
    for lesion in r.scores.get("missed", []):
        print(f"  missed lesion: {lesion['diameter_mm']} mm, {lesion['volume_ml']} mL at LPS {lesion['centroid_lps_mm']}")
    for s in outcome.slos:
        print(f"  SLO {s.slo}: {'BREACHED' if s.breached else 'ok'} ({s.why})")


@review_app.command("list")
def list_reviews(model: Optional[str] = typer.Option(None, help="NAME:VERSION"),
                 unmatched: bool = typer.Option(False, "--unmatched", help="corrected SEGs that matched no result"),
                 config: Optional[Path] = ConfigOpt) -> None:
    """Reviews, newest first."""
    from medseg.quality.report import model_ref

    _, _, _, monitor = _monitoring(config)
    rows = monitor.store.reviews(model=model_ref(model), status="unmatched" if unmatched else "scored", limit=200)
    for r in rows:
        print(f"{r.created_at:%Y-%m-%d %H:%M}  #{r.id}  {r.model or '-'}  study {r.study_uid}  {r.door}:{r.submitted_by}"
              f"  Dice {_fmt(r.dice)}  FN {_fmt(r.fn_rate)}  {r.note}")
    print(f"{len(rows)} review(s)")


@review_app.command()
def worklist(config: Optional[Path] = ConfigOpt,
             fmt: str = typer.Option("table", "--format", help="table | json")) -> None:
    """Studies waiting for re-review (e.g. after a model rollback)."""
    from medseg.quality.worklist import Worklist

    _, _, jobs, _ = _open(config)
    items = [i.as_dict() for i in Worklist(jobs.engine).open_items()]
    if fmt == "json":
        print(json.dumps(items, indent=1))
        return
    for i in items:
        print(f"{i['created_at'][:19]}  study {i['study_uid']}  job {i['job_id']}  {i['model']}  {i['reason']}")
    print(f"{len(items)} open item(s)")


@monitor_app.command()
def report(model: Optional[str] = typer.Option(None, help="NAME:VERSION (default: every version with data)"),
           since: Optional[str] = typer.Option(None, help="period of the plot and 'period' numbers: 7d, 24h, 2026-11-01"),
           png: Path = typer.Option(Path("monitoring-report.png"), "--png", help="where to write the plot"),
           fmt: str = typer.Option("table", "--format", help="table | json"),
           config: Optional[Path] = ConfigOpt) -> None:
    """SLO windows with confidence intervals, burn rates, drift and alerts; writes a PNG plot."""
    from medseg.core.exceptions import MedsegError
    from medseg.quality.report import model_ref, parse_since, plot, summary

    try:
        start = parse_since(since)
    except ValueError as exc:
        raise MedsegError(str(exc), code="monitor.invalid_since") from None
    _, _, _, monitor = _monitoring(config)
    data = summary(monitor, model_ref(model), start)
    plot(data, png)
    if fmt == "json":
        print(json.dumps(data, indent=1))
        return
    table = Table(title="Review quality per model version (long window)")
    for col in ("model", "reviews", "Dice mean [CI]", "FN rate [CI]", "lesion sens. [CI]", "sens. >=10 mm [CI]"):
        table.add_column(col)
    slos = Table(title="SLOs")
    for col in ("model", "SLO", "objective", "value", "burn long/short", "state"):
        slos.add_column(col)
    for m in data["models"]:
        w = m["window"]
        table.add_row(m["model"], str(w["reviews"]), _ci(w["dice_mean"]), _ci(w["fn_rate_mean"]),
                      _ci(w["lesion_sensitivity"]), _ci(w["lesion_sensitivity_ge10"]))
        for s in m["slos"]:
            sign = ">=" if s["direction"] == "min" else "<="
            slos.add_row(m["model"], s["slo"], f"{s['metric']} {sign} {s['objective']}", _ci(s["long"]),
                         f"{_fmt(s['burn_long'], 2)} / {_fmt(s['burn_short'], 2)}",
                         "[red]BREACHED[/red]" if s["breached"] else "ok")
    out.print(table)
    out.print(slos)
    drifted = [(m["model"], d) for m in data["models"] for d in m["drift"] if d["drifted"]]
    out.print(f"drift: {len(drifted)} monitor(s) drifting" + "".join(
        f"\n  {name}: {d['monitor']} {d['statistic']} {d['value']} (threshold {d['threshold']})" for name, d in drifted))
    out.print(f"alerts firing: {len(data['alerts_firing'])}" + "".join(
        f"\n  #{a['id']} {a['kind']} {a['name']} {a['model']}: {a['action'] or a['evidence'].get('why', '')}"
        for a in data["alerts_firing"]))
    out.print(f"unmatched corrected SEGs: {data['unmatched_reviews']}")
    out.print(f"plot: {png}")
