"""`medseg audit query | timeline | verify | export`: postmortem questions answered from the trail.

Every read is itself recorded (``audit.read`` / ``audit.exported``, actor ``cli:<user>``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from medseg.app.cli.common import ConfigOpt, cli_actor, output_file

audit_app = typer.Typer(no_args_is_help=True, help="Query, verify and export the audit trail.")
out = Console()
COLUMNS = ("seq", "ts", "action", "outcome", "actor", "study_uid", "job_id", "model", "destination", "reason_code")


def _open(config: Optional[Path]):
    """The audit trail of an existing service: refuses to create an empty one where none is."""
    from medseg.app.cli.common import command_settings
    from medseg.app.context import build_context

    settings = command_settings(config, reading=True)
    auditor = build_context(settings, create_keys=False).auditor
    auditor.log.create()
    return auditor.log, auditor, settings


@audit_app.command("query")
def query_cmd(
    study: Optional[str] = typer.Option(None, help="StudyInstanceUID"),
    series: Optional[str] = typer.Option(None, help="SeriesInstanceUID"),
    model: Optional[str] = typer.Option(None, help="NAME:VERSION or name/version as recorded"),
    action: Optional[str] = typer.Option(None, help="action, or a prefix with * (job.*)"),
    actor: Optional[str] = typer.Option(None, help="calling AE title, api:<host>, cli:<user>, system"),
    outcome: Optional[str] = typer.Option(None, help="success | failure"),
    job: Optional[int] = typer.Option(None, help="job id"),
    since: Optional[str] = typer.Option(None, help="inclusive: 7d, 24h, yesterday or ISO 8601 (naive = UTC)"),
    until: Optional[str] = typer.Option(None, help="exclusive, same forms"),
    limit: int = typer.Option(1000, min=1, max=100_000),
    fmt: str = typer.Option("table", "--format", help="table | json | csv"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Events matching every filter given, oldest first."""
    from audit.query import AuditFilter, query

    if fmt not in ("table", "json", "csv"):
        raise typer.BadParameter("must be table, json or csv", param_hint="--format")
    log, auditor, settings = _open(config)
    f = _filter(AuditFilter, study_uid=study, series_uid=series, model=model, action=action, actor=actor,
                outcome=outcome, job_id=job, since=since, until=until, limit=limit)
    auditor("audit.read", actor=cli_actor(), what="events", filter=f.describe())
    _emit([e.as_dict() for e in query(log, f)], fmt)


def _filter(cls, **values):
    """The filter, or one line naming the value that is not a time (never "invalid setting")."""
    from pydantic import ValidationError

    from medseg.core.exceptions import MedsegError

    try:
        return cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MedsegError(f"--{first['loc'][0]}: {first['msg'].removeprefix('Value error, ')}",
                          code="audit.invalid_filter") from None


def _emit(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=1, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=[*COLUMNS, "details"], extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "details": json.dumps(r["details"], sort_keys=True)})
    else:
        table = Table(*COLUMNS, "details")
        for r in rows:
            table.add_row(*(str(r.get(c) if r.get(c) not in (None, "") else "") for c in COLUMNS),
                          json.dumps(r["details"], sort_keys=True)[:80])
        out.print(table)
        out.print(f"{len(rows)} event(s)")


@audit_app.command()
def timeline(study_uid: str = typer.Argument(..., help="StudyInstanceUID"), config: Optional[Path] = ConfigOpt) -> None:
    """The story of one study: received -> selected -> segmented -> SEG sent (-> reviewed)."""
    from audit.query import describe
    from audit.query import timeline as study_timeline
    from medseg.core.exceptions import MedsegError

    log, auditor, settings = _open(config)
    # the read names the study in its filter, as the API's does, not as the event's study: reading
    # a trail is not part of the study's own story (and an unknown study stays unknown)
    auditor("audit.read", actor=cli_actor(), what="timeline", filter={"study_uid": study_uid})
    rows = study_timeline(log, study_uid)
    if not rows:
        raise MedsegError("the audit trail has no event for this study", code="audit.study_not_found")
    for e in rows:
        print(describe(e))


@audit_app.command()
def verify(config: Optional[Path] = ConfigOpt,
           anchors: Optional[Path] = typer.Option(None, help="anchors file (default: the configured one)")) -> None:
    """Re-walk the hash chain; exit 1 and name the first bad event if it is broken."""
    from audit.verify import read_anchors
    from audit.verify import verify as run
    from medseg.app.context import build_context
    from medseg.app.crosscheck import crosscheck

    log, auditor, settings = _open(config)
    result = run(log, read_anchors(anchors or auditor.anchors_file), anchor_every=settings.audit.anchor_every)
    if result.ok:
        result = crosscheck(build_context(settings, create_keys=False), result)
    if result.ok:
        print(f"audit chain intact: {result.events} events, head #{result.head_seq} {result.head_hash}, "
              f"{result.anchors_checked} anchor(s) matched")
        for note in result.notes:
            print(f"  note: {note}")
        return
    print(f"audit chain BROKEN at event {result.at_seq}: {result.problem}", file=sys.stderr)
    raise typer.Exit(1)


@audit_app.command()
def export(
    since: Optional[str] = typer.Option(None, help="inclusive: 7d, 24h, yesterday or ISO 8601 (naive = UTC)"),
    until: Optional[str] = typer.Option(None, help="exclusive, same forms"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | atna (DICOM PS3.15 A.5 audit messages, one per line)"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="file (default: stdout)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Export events (all stored fields, or ATNA XML) for a SIEM or an auditor."""
    from audit.export import export as export_events
    from audit.query import AuditFilter

    if fmt not in ("jsonl", "atna"):
        raise typer.BadParameter("must be jsonl or atna", param_hint="--format")
    output_file(output, "--out")
    log, auditor, settings = _open(config)
    f = _filter(AuditFilter, since=since, until=until, limit=100_000)
    auditor("audit.exported", actor=cli_actor(), format=fmt, filter=f.describe())
    with open(output, "w", encoding="utf-8") if output else contextlib.nullcontext(sys.stdout) as stream:
        total = export_events(log, f, stream, fmt, application_ae=settings.node.ae_title)
    if output:
        print(f"exported {total} event(s) to {output}", file=sys.stderr)
