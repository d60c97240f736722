"""`medseg db status | upgrade`: the service database's schema version (medseg.app.schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medseg.app.cli.common import ConfigOpt, cli_actor, command_settings

db_app = typer.Typer(no_args_is_help=True, help="The service database's schema: status, upgrade (migrations).")


@db_app.command()
def status(config: Optional[Path] = ConfigOpt) -> None:
    """The database's schema revision and the one this medseg needs."""
    from medseg.app.schema import state
    from medseg.db import make_engine

    settings = command_settings(config, reading=True)
    found = state(make_engine(settings.service.db_url()))
    at = found.current or ("none (a database from before schema migrations)" if found.tables else "none (empty)")
    verdict = "up to date" if found.up_to_date else "run `medseg db upgrade` (back up first: `medseg backup DIR`)"
    print(f"database revision {at}; this medseg needs {found.head}: {verdict}")


@db_app.command()
def upgrade(config: Optional[Path] = ConfigOpt) -> None:
    """Migrate the database to the revision this medseg needs (stop every medseg process using it
    first, and back it up). A database from before migrations is recognised and upgraded too."""
    from medseg.app.context import build_context
    from medseg.app.schema import state
    from medseg.app.schema import upgrade as run

    settings = command_settings(config, reading=True)
    ctx = build_context(settings)
    before = state(ctx.engine)
    after = run(ctx.engine)
    if before.current == after.current:
        print(f"database revision {after.current}: already up to date")
        return
    ctx.auditor.log.create()
    ctx.auditor("service.schema_upgraded", actor=cli_actor(), from_revision=before.current or "unversioned",
                to_revision=after.current)
    print(f"database upgraded from revision {before.current or 'unversioned (before migrations)'} to {after.current}")
