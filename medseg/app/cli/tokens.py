"""`medseg tokens create | list | revoke`: the HTTP API's bearer tokens (medseg.app.auth.tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medseg.app.cli.common import ConfigOpt, cli_actor, open_context, wide

tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: create (shown once), list, revoke. Each change is audited.")


@tokens_app.command()
def create(
    name: str = typer.Argument(..., help="who or what holds it, e.g. pacs-admin, dr-lee, prometheus"),
    role: list[str] = typer.Option(..., "--role", "-r", help="viewer, radiologist, ml-engineer, auditor or admin "
                                   "(repeat for several)"),
    expires_days: Optional[float] = typer.Option(None, "--expires-days", min=0.01, help="expiry (default: none)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Create a token and print its secret once (store it now: only its SHA-256 is kept)."""
    secret, row = open_context(config).tokens.create(name, role, actor=cli_actor(), expires_days=expires_days)
    print(secret)
    typer.echo(f"token {row.name}: roles {row.roles}; expires {row.expires_at or 'never'}. Use it as "
               "'Authorization: Bearer <token>'; it is not shown again.", err=True)


@tokens_app.command("list")
def list_tokens(config: Optional[Path] = ConfigOpt) -> None:
    """Every token: name, roles, created (by whom), last used, expiry, revocation. Never the secret."""
    from rich.table import Table

    table = Table("name", "roles", "created", "by", "last used", "expires", "revoked")
    for t in open_context(config, reading=True).tokens.list():
        d = t.as_dict()
        table.add_row(d["name"], ",".join(d["roles"]), d["created_at"], d["created_by"], d["last_used_at"] or "-",
                      d["expires_at"] or "never", d["revoked_at"] or "-")
    wide.print(table)


@tokens_app.command()
def revoke(name: str = typer.Argument(...), config: Optional[Path] = ConfigOpt) -> None:
    """Revoke a token: it stops working at once."""
    row = open_context(config).tokens.revoke(name, actor=cli_actor())
    print(f"token {row.name} revoked")
