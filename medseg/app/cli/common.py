"""What every ``medseg`` sub-command shares: the ``--config`` option, the context it opens, the actor,
the consoles and the progress spinner."""

from __future__ import annotations

import getpass
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:  # the context imports the database and model code: only when a command runs
    from medseg.app.context import AppContext

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML configuration (default: MEDSEG_CONFIG / environment)")
NameOpt = typer.Option(None, "--name", help="model name (default: the configured default model's)")


def cli_actor() -> str:
    """The actor of a CLI action as the audit trail records it: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli:unknown"


def command_settings(config: Optional[Path], *, reading: bool = False):
    """Settings from ``--config`` (else MEDSEG_CONFIG and the environment), with the log configured.
    ``reading``: the command only reads a service's state, so a missing SQLite database is an error
    naming where it looked (never an empty ``medseg-data`` made in the current directory)."""
    from medseg.app import logs
    from medseg.config import load_settings
    from medseg.core.exceptions import ConfigError

    settings = load_settings(config)
    logs.configure(settings.logging)
    url = settings.service.db_url()
    if reading and url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists():
        raise ConfigError(f"no medseg data at {url.split('///', 1)[-1]}: give --config (or MEDSEG_CONFIG) or set "
                          "[service] data_dir (MEDSEG_SERVICE__DATA_DIR)", code="config.no_data")
    return settings


def open_context(config: Optional[Path], *, reading: bool = False) -> AppContext:
    """:func:`command_settings`, then the shared wiring."""
    from medseg.app.context import build_context

    return build_context(command_settings(config, reading=reading)).prepare()


def model_name(ctx: AppContext, name: Optional[str]) -> str:
    return name or ctx.default_model_name


err = Console(stderr=True)
stdout = Console()
#: tables: piped output does not wrap cells at 80 columns
wide = Console(width=None if sys.stdout.isatty() else 160)


@contextmanager
def progress(message: str):
    """A spinner with the current stage on stderr (only when stderr is a terminal)."""
    if not err.is_terminal:
        yield lambda stage: None
        return
    with err.status(message) as status:
        yield lambda stage: status.update(f"{message}: {stage}")


def output_folder(path: Path) -> Path:
    """An ``--out`` folder: created if missing; an existing file there is the user's to fix."""
    from medseg.core.exceptions import MedsegError

    if path.exists() and not path.is_dir():
        raise MedsegError(f"--out {path}: exists and is not a folder", code="cli.out_not_folder")
    return path


def output_file(path: Optional[Path], option: str) -> Optional[Path]:
    """A file to write (``--out``, ``--png``): replaced if it exists; a folder or a missing parent is an error."""
    from medseg.core.exceptions import MedsegError

    if path is not None and path.is_dir():
        raise MedsegError(f"{option} {path}: is a folder, give a file name", code="cli.out_is_folder")
    if path is not None and not path.parent.is_dir():
        raise MedsegError(f"{option} {path}: folder {path.parent} does not exist", code="cli.out_no_folder")
    return path


def number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
