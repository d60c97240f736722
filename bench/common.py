"""What the benchmarks share: running a command in a child process and measuring its wall time and
its own peak RSS."""

from __future__ import annotations

import subprocess
import sys
import time

#: runs a command and prints its peak RSS (MB), so the parent measures each child alone
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, file=sys.stderr); sys.exit(r.returncode)")


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of ``cmd``; exits with its stderr if it fails."""
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(f"failed: {' '.join(cmd[:4])}...\n{r.stderr[-2000:]}")
    return seconds, float(r.stderr.strip().splitlines()[-1])
