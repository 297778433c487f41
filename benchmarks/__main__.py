"""Run the benchmarks and print every target side by side: ``python -m benchmarks [names]``."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from typing import Protocol

import numpy as np

from .common import Options, Target, table

# name -> module; each module has run(options) -> list[Target]. Order is the print order.
BENCHMARKS = {
    "decision_time": "benchmarks.decision_time",
    "regret": "benchmarks.regret",
    "contextual": "benchmarks.contextual",
    "pacing": "benchmarks.pacing",
    "cost": "benchmarks.cost",
    "drift": "benchmarks.drift",
    "ope": "benchmarks.ope",
    "http_decide": "benchmarks.http_decide",
    "ingest": "benchmarks.ingest",
    "backup": "benchmarks.backup",
    "psycopg_impl": "benchmarks.psycopg_impl",
}


class Benchmark(Protocol):
    def run(self, options: Options) -> list[Target]: ...


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)"
    )
    parser.add_argument(
        "--seeds", type=int, default=2, help="simulation seeds averaged per figure (default 2)"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target is not met")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    options = Options(seeds=args.seeds, quick=args.quick)
    try:
        import os

        load = "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "load average unknown"
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus, {load}"
    )
    targets: list[Target] = []
    for name in args.names or list(BENCHMARKS):
        module: Benchmark = importlib.import_module(BENCHMARKS[name])
        print(f"\n=== {name} ===")
        started = time.perf_counter()
        targets.extend(module.run(options))
        print(f"({name}: {time.perf_counter() - started:.0f} s)")
    print("\n=== targets ===")
    print(
        table(
            ("benchmark", "target", "figure", "met"),
            [(t.benchmark, t.goal, t.figure, "yes" if t.met else "NO") for t in targets],
        )
    )
    unmet = sum(not t.met for t in targets)
    print(f"{len(targets) - unmet}/{len(targets)} targets met")
    return 1 if args.strict and unmet else 0


if __name__ == "__main__":
    sys.exit(main())
