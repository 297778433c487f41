"""What every benchmark module shares: run options, targets, percentiles and table printing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
