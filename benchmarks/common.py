"""What every benchmark module shares: run options, targets, percentiles and table printing."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ops.core import tools


@dataclass(frozen=True)
class Options:
    """Options from the command line: ``seeds`` runs per simulated figure (averaged)."""

    seeds: int = 2
    quick: bool = False


@dataclass(frozen=True)
class Target:
    """One target of the issue, the figure measured against it and whether it is met."""

    benchmark: str
    goal: str
    figure: str
    met: bool


def percentiles_us(samples_ns: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """p50 and p99 in microseconds of durations in nanoseconds."""
    p50, p99 = np.percentile(np.asarray(samples_ns, dtype=np.float64), [50, 99])
    return float(p50) / 1000.0, float(p99) / 1000.0


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain, aligned text table."""
    cells = [[str(h) for h in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres(*, fsync: bool = False) -> Iterator[str]:
    """A throwaway PostgreSQL on a free 127.0.0.1 port (Debian's, from ``invoke setup``); yields
    the URL of its ``postgres`` database. ``fsync=False`` (the default) for throughput figures
    that should not measure the disk."""
    initdb, pg_ctl = tools.which("initdb"), tools.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed; run `invoke setup`")
    base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    prefix: list[str] = []
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"
        shutil.chown(base, "postgres")
    port = free_port()
    data = base / "data"
    subprocess.run([*prefix, str(initdb), "-D", str(data), "--auth=trust", "-U", user],
                   check=True, capture_output=True)  # fmt: skip
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync={'on' if fsync else 'off'}"
    )
    subprocess.run([*prefix, str(pg_ctl), "-D", str(data), "-l", str(base / "log"), "-o",
                    options, "-w", "start"], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
