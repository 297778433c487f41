"""CPU per repository call on PostgreSQL under each psycopg implementation, on the same libpq.

The service image installs psycopg's C implementation (psycopg-c), built from its locked sdist
against Debian's libpq, in place of psycopg-binary (docs/containers.md#image-size). This measures
what that choice costs on the PostgreSQL path against the two others: psycopg-binary (PyPI's,
what the host venvs run) and psycopg's pure-Python implementation (no build at all). psycopg-c is
the wheel ``invoke docker.build`` builds and caches (``build_context.build_from_source``),
unpacked into a scratch directory.

Each implementation runs in its own process (``PSYCOPG_IMPL``), in turn, for ``ROUNDS`` rounds on
one throwaway PostgreSQL (fsync on), and times its own thread's CPU per call:
``write_decisions`` of 100 decisions (the decision writer's batch) and ``record_feedback`` of 10
and of 1 item. The target: psycopg-c costs at most 1.2x psycopg-binary's CPU per decision batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .common import Options, Target, table

IMPLEMENTATIONS = ("binary", "c", "python")
ROUNDS = 3
LIMIT = 1.2  # psycopg-c's CPU per decision batch at most this times psycopg-binary's
CALLS = ("write100", "feedback10", "feedback1")
LABELS = {
    "write100": "write_decisions, 100 decisions",
    "feedback10": "record_feedback, 10 items",
    "feedback1": "record_feedback, 1 item",
}

# Runs in the measured process: ``python -c WORKER URL CALLS``; prints one JSON line.
WORKER = r"""
import json, sys, time, uuid
from datetime import UTC, datetime
import psycopg
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.storage.repository import FeedbackInput, PendingDecision, Repository

url, calls = sys.argv[1], int(sys.argv[2])
engine = make_engine(url)
repo = Repository(engine)
name = f"w{uuid.uuid4().hex[:8]}"
arms = [f"a{i}" for i in range(8)]
spec = {"name": name, "arms": [{"name": a, "model": f"m-{a}", "provider": "p", "params": {}}
                               for a in arms]}
wid = repo.create_workload(name, spec, arms).id
spent = {"write100": 0.0, "feedback10": 0.0, "feedback1": 0.0}
for _ in range(calls):
    batch = [PendingDecision(id=uuid.uuid4().hex, workload_id=wid, workload=name, arm=arms[i % 8],
                             propensity=0.125, created_at=datetime.now(UTC)) for i in range(100)]
    start = time.thread_time()
    repo.write_decisions(batch)
    spent["write100"] += time.thread_time() - start
    items = [FeedbackInput(b.id, 0.8, 0.01, 120.0) for b in batch[:10]]
    start = time.thread_time()
    repo.record_feedback(items)
    spent["feedback10"] += time.thread_time() - start
    start = time.thread_time()
    repo.record_feedback([FeedbackInput(batch[10].id, 0.8, 0.01, 120.0)])
    spent["feedback1"] += time.thread_time() - start
engine.dispose()
print(json.dumps({"impl": psycopg.pq.__impl__, "libpq": psycopg.pq.version(),
                  **{k: v / calls * 1e6 for k, v in spent.items()}}))
"""


def psycopg_c(scratch: Path) -> Path:
    """A directory holding psycopg-c, unpacked from the wheel the service image installs."""
    from ops.core.runner import Runner
    from ops.docker import build_context

    if f"{sys.version_info[0]}.{sys.version_info[1]}" != build_context.image_python():
        raise RuntimeError(
            f"psycopg-c is built for the image's Python {build_context.image_python()}; "
            f"run the benchmark on it (this is {sys.version.split()[0]})"
        )
    runner = Runner(echo=False)
    spec = build_context.IMAGES["service"]
    requirements = scratch / "requirements.txt"
    build_context.export_requirements(runner, spec, requirements, extras=spec.extras)
    platform = build_context.native_platform()
    if platform is None:
        raise RuntimeError(f"no image platform for this machine ({os.uname().machine})")
    wheel = build_context.build_from_source(runner, requirements, platform, build_context.PSYCOPG_C)
    if wheel is None:  # pragma: no cover - the native platform is always built
        raise RuntimeError("psycopg-c was not built")
    target = scratch / "psycopg-c"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def measure(url: str, implementation: str, calls: int, path: Path) -> dict[str, float]:
    """One process's CPU per call (µs) under ``implementation``; it must load that one."""
    env = dict(os.environ, PSYCOPG_IMPL=implementation)
    if implementation == "c":
        env["PYTHONPATH"] = os.pathsep.join([str(path), *sys.path])
    result = subprocess.run(
        [sys.executable, "-c", WORKER, url, str(calls)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"PSYCOPG_IMPL={implementation}: {result.stderr.strip()[-500:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    loaded = figures.pop("impl")
    if loaded != implementation:
        raise RuntimeError(f"asked for {implementation}, psycopg loaded {loaded}")
    return {name: float(value) for name, value in figures.items()}


def run(options: Options) -> list[Target]:
    from llm_optimizer_service.storage import migrations

    from ops.core import tools
    from tests._support.postgres import postgres_server

    calls = 30 if options.quick else 300
    figures: dict[str, dict[str, list[float]]] = {
        impl: {call: [] for call in CALLS} for impl in IMPLEMENTATIONS
    }
    libpq = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-psycopg-") as tmp:
        path = psycopg_c(Path(tmp))
        with postgres_server(tools.require, fsync=True) as pg:
            url = pg.create_database("bench")
            migrations.upgrade(url)
            for _ in range(ROUNDS):
                for impl in IMPLEMENTATIONS:
                    measured = measure(url, impl, calls, path)
                    libpq = measured["libpq"]
                    for call in CALLS:
                        figures[impl][call].append(measured[call])
    print(
        f"CPU per repository call on PostgreSQL (fsync on, libpq {int(libpq)}), µs: "
        f"{ROUNDS} rounds of {calls} calls, the implementations in turn (range over rounds)"
    )
    print(
        table(
            (
                "call",
                *(f"psycopg-{i}" if i != "python" else "Python impl." for i in IMPLEMENTATIONS),
            ),
            [
                (
                    LABELS[call],
                    *(
                        f"{min(figures[i][call]):,.0f}-{max(figures[i][call]):,.0f}"
                        for i in IMPLEMENTATIONS
                    ),
                )
                for call in CALLS
            ],
        )
    )

    def median(impl: str, call: str) -> float:
        return sorted(figures[impl][call])[len(figures[impl][call]) // 2]

    c_ratio = median("c", "write100") / median("binary", "write100")
    python_ratio = median("python", "write100") / median("binary", "write100")
    print(
        f"decision batch, median over rounds: psycopg-c {c_ratio:.2f}x psycopg-binary's CPU, "
        f"the Python implementation {python_ratio:.2f}x"
    )
    return [
        Target(
            "psycopg_impl",
            f"psycopg-c (the image's) <= {LIMIT}x psycopg-binary's CPU per decision batch",
            f"{c_ratio:.2f}x (Python implementation: {python_ratio:.2f}x)",
            c_ratio <= LIMIT,
        )
    ]
