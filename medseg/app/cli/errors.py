"""The CLI's error boundary: one table from error to exit code, and one plain line on stderr.

| error | exit | line |
|---|---|---|
| :class:`MedsegError` (any domain error: input, model, config, registry, review, job state) | 2 | ``medseg: error: <message> [<code>]`` |
| pydantic ``ValidationError`` (a setting) | 2 | ``medseg: error: invalid setting <where>: <rule> [config.invalid]`` |
| a usage error (click/typer: missing argument, unknown option) | click's (2) | click's usage message |
| Ctrl-C | 130 | ``medseg: aborted`` |
| anything else | 1 | ``medseg: internal error: <type>`` (``MEDSEG_DEBUG=1``: the traceback) |

Messages of third-party exceptions are never printed: they can quote header values.
"""

from __future__ import annotations

import os
import sys

import click
import typer
from pydantic import ValidationError

from medseg.core.exceptions import MedsegError

#: click's usage errors, and those of the click typer vendors since 0.23 (``typer._click``): a
#: missing argument or an unknown option is the user's to fix, never an "internal error"
CLICK_ERRORS = tuple({click.exceptions.ClickException,
                      *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")})
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_ABORTED = 130

#: domain error class -> exit code (most specific first; every MedsegError is the user's to act on)
EXIT_CODES: tuple[tuple[type[MedsegError], int], ...] = ((MedsegError, EXIT_USER_ERROR),)


def exit_code(exc: MedsegError) -> int:
    return next(code for cls, code in EXIT_CODES if isinstance(exc, cls))


def fail(line: str) -> None:
    """Errors are one plain line (no wrapping, no markup) on stderr."""
    print(line.replace("\n", " "), file=sys.stderr)


def run(app: typer.Typer) -> None:
    """Run the CLI; every error leaves through the table above."""
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except MedsegError as exc:
        fail(f"medseg: error: {exc.message} [{exc.code}]")
        sys.exit(exit_code(exc))
    except (typer.Abort, KeyboardInterrupt):
        fail("medseg: aborted")
        sys.exit(EXIT_ABORTED)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        fail(f"medseg: error: invalid setting {where}: {first['msg']} [config.invalid]")
        sys.exit(EXIT_USER_ERROR)
    except CLICK_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the CLI's error boundary
        if os.environ.get("MEDSEG_DEBUG"):
            raise
        fail(f"medseg: internal error: {type(exc).__name__} (set MEDSEG_DEBUG=1 for details)")
        sys.exit(EXIT_INTERNAL_ERROR)
