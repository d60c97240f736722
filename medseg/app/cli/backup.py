"""`medseg backup` and `medseg restore`: the data directory, consistently (medseg.app.backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medseg.app.cli.common import ConfigOpt, cli_actor, command_settings, open_context


def backup(out: Path = typer.Argument(..., help="folder to write medseg-backup-<time>/ into (e.g. another disk)"),
           config: Optional[Path] = ConfigOpt) -> None:
    """Copy the database (consistently, even while `medseg serve` runs), spool, results, reviews,
    model store, anchors and patient key; never the chain key (back that up once, separately)."""
    from medseg.app.backup import backup as run
    from medseg.app.context import build_context

    settings = command_settings(config, reading=True)
    report = run(settings, out)
    # the trail only, no schema check: an outdated database is what one backs up before `medseg db upgrade`
    build_context(settings).auditor("service.backed_up", actor=cli_actor(), files=report.files, bytes=report.bytes,
                                 database=report.database)
    print(f"backup {report.path}: {report.files} files, {report.bytes / 2**20:.1f} MiB, database {report.database}")


def restore(source: Path = typer.Argument(..., help="a medseg-backup-<time> folder"),
            force: bool = typer.Option(False, "--force", help="replace the data directory's existing database"),
            config: Optional[Path] = ConfigOpt) -> None:
    """Put a backup back at the configured paths (checksums checked first), then record it."""
    from medseg.app.backup import restore as run

    settings = command_settings(config)
    notes = run(settings, source, force=force)
    if settings.audit_files()["chain_key"].exists():
        open_context(config).auditor("service.restored", actor=cli_actor(), backup=source.name)
    print(f"restored {source} into {settings.service.data_dir}; check it with `medseg audit verify`")
    for note in notes:
        print(f"  note: {note}")
