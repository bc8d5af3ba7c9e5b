"""What the benchmarks read from /proc about a gunicorn master's workers (which they are and
how much CPU they have used), and the check that their own dependencies are installed."""
from __future__ import annotations

import os
from pathlib import Path


def worker_pids(master_pid: int) -> list[str]:
    """The process ids of the master's workers."""
    return Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()


def cpu_seconds(master_pid: int) -> float:
    """CPU time (user + system) used so far by the workers of a gunicorn master.

    Divided by the requests served, it is the server's cost per request, which other work on
    the machine does not change the way it changes throughput.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in worker_pids(master_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a worker replaced meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def require_bench_extra() -> None:
    """Stop with a clear message when the benchmarks' own dependencies are not installed: the
    first floor is served behind Flask-Limiter, which the app itself no longer uses."""
    import importlib.util
    import sys
    if importlib.util.find_spec("flask_limiter") is None:
        sys.exit("The benchmarks need their extra dependencies: "
                 ".venv/bin/python -m pip install -e '.[bench]'")
