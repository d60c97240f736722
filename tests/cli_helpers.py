"""`medseg ...` run in the test process: the real entry point, with a child process's environment.

A child `python -m medseg` that loads a model spends about 4 s importing torch and MONAI, which this
process has already imported; the model, bundle and registry tests run dozens of such commands. What
they test is the command, not the interpreter around it, so they run it here with exactly the
``MEDSEG_*`` variables a child would see. The console script itself, its exit codes and its
start-up, are tested in child processes (tests/test_bad_input.py, tests/test_cli_e2e.py,
tests/test_install.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from click.testing import CliRunner


def medseg(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``medseg ARGS`` through :func:`medseg.app.cli.main.main` (its error boundary included), under
    ``env``'s ``MEDSEG_*`` variables and no others; returns what ``subprocess.run`` would."""
    from medseg.app.cli.main import main
    from medseg.app.logs import HANDLER_NAME
    from medseg.config import get_settings

    overlay = {key: None for key in os.environ if key.startswith("MEDSEG_")}
    overlay.update({key: value for key, value in env.items() if key.startswith("MEDSEG_")})
    argv = ["medseg", *map(str, args)]
    saved, code = sys.argv, 0
    get_settings.cache_clear()
    with CliRunner().isolation(env=overlay) as (out, err, _):
        sys.argv = argv
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            sys.stdout.flush()  # the isolation's text streams buffer
            sys.stderr.flush()
            sys.argv = saved
            get_settings.cache_clear()
            root = logging.getLogger()  # the command's log handler wrote to this call's stderr
            for handler in [h for h in root.handlers if h.name == HANDLER_NAME]:
                root.removeHandler(handler)
                handler.close()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(argv, code, stdout, stderr)
