"""`medseg db status | upgrade`: the service database's schema version (medseg.app.schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medseg.app.cli.common import ConfigOpt, cli_actor, command_settings

db_app = typer.Typer(no_args_is_help=True, help="The service database's schema: status, upgrade (migrations).")


@db_app.command()
def status(config: Optional[Path] = ConfigOpt) -> None:
    """The schema revision of the service tables and of the audit trail's, and the ones this medseg needs."""
    from medseg.app.context import build_context
    from medseg.app.schema import histories

    ctx = build_context(command_settings(config, reading=True), create_keys=False)
    for what, history, db in histories(ctx.engine, ctx.auditor.log.engine):
        found = history.state(db)
        at = found.current or ("none (from before schema migrations)" if found.tables else "none (empty)")
        verdict = "up to date" if found.up_to_date else "run `medseg db upgrade` (back up first: `medseg backup DIR`)"
        print(f"{what} tables: revision {at}; this medseg needs {found.head}: {verdict}")


@db_app.command()
def upgrade(config: Optional[Path] = ConfigOpt) -> None:
    """Migrate the service and audit tables to the revisions this medseg needs (stop every medseg
    process using them first, and back them up). A database from before migrations is recognised
    and upgraded too."""
    from medseg.app.context import build_context
    from medseg.app.schema import upgrade as run

    ctx = build_context(command_settings(config, reading=True))
    moved = {what: (before, after) for what, (before, after) in run(ctx.engine, ctx.auditor.log.engine).items()
             if before != after}
    if not moved:
        print("database already up to date")
        return
    ctx.prepare()  # now up to date: the trail opened as every command opens it (keys, its start anchor)
    ctx.auditor("service.schema_upgraded", actor=cli_actor(),
                **{f"{what}_revision": f"{before or 'unversioned'} -> {after}" for what, (before, after) in moved.items()})
    for what, (before, after) in moved.items():
        print(f"{what} tables upgraded from revision {before or 'unversioned (before migrations)'} to {after}")
