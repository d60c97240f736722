"""The ``medseg`` command line (typer): the commands, and its one error boundary.

A :class:`MedsegError` becomes one line on stderr and the exit code of
:mod:`medseg.app.cli.errors`; anything unexpected becomes one line naming the error
type and exit code 1 (set ``MEDSEG_DEBUG=1`` for the traceback). Exception messages
of third-party code are not printed: they can quote header values.
Sub-command modules import nothing heavy at load; each command imports what it runs.
"""

from __future__ import annotations

import typer

from medseg.app.cli.audit import audit_app
from medseg.app.cli.backup import backup, restore
from medseg.app.cli.db import db_app
from medseg.app.cli.errors import run
from medseg.app.cli.models import models_app
from medseg.app.cli.monitor import monitor_app
from medseg.app.cli.review import review_app
from medseg.app.cli.segment import phantom, segment
from medseg.app.cli.serve import serve
from medseg.app.cli.tokens import tokens_app
from medseg.app.cli.training import evaluate, train

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CT tumor segmentation: DICOM in, DICOM-SEG out.")


def _version(value: bool) -> None:
    if value:
        from medseg import __version__

        print(f"medseg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """CT tumor segmentation: DICOM in, DICOM-SEG out."""
for command in (segment, phantom, train, evaluate, serve, backup, restore):
    app.command()(command)
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
app.add_typer(review_app, name="review")
app.add_typer(monitor_app, name="monitor")
app.add_typer(tokens_app, name="tokens")
app.add_typer(db_app, name="db")


def main() -> None:
    import atexit
    import gc

    from medseg.app.logs import route_warnings

    route_warnings()  # library warnings never reach the user's console (medseg.app.logs)
    # A command ends with hundreds of thousands of objects (SQLAlchemy, pydantic, typer), and the
    # interpreter's last garbage collections over them took 0.1-0.2 s of every command (`review
    # submit`: 0.22 s of 0.9). Frozen objects are skipped by those collections; reference counting
    # still frees them, the log handlers still flush (logging's own exit hook runs after this one),
    # and everything a command stores is committed before it returns.
    atexit.unregister(gc.freeze)  # once, however often main() runs in one process (the tests)
    atexit.register(gc.freeze)
    run(app)


if __name__ == "__main__":
    main()
