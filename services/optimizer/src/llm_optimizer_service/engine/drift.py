"""Change detection on one arm's metric stream: a two-sided Page-Hinkley test, state as plain data.

Each detector standardises its stream with a running (Welford) mean and standard deviation and
accumulates the Page-Hinkley statistics in both directions (the CUSUM form: ``up`` grows while
values sit above the running mean by more than ``delta`` standard deviations, ``down`` while
they sit below). A change is signalled when either passes ``threshold`` standard deviations,
after a warm-up that lets the scale estimate settle. The state is a frozen dataclass of numbers,
so it is stored as JSON next to the arm's statistics and updated inside the same transaction.

Defaults (``delta`` 0.5 sd, ``threshold`` 10 sd): the in-control average run length of one side
is of the order of 10^5 observations, while a shift of 1 sd is caught after ~20 observations
and a shift of 3 sd after ~4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

Direction = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """How drift is detected and what is done about it.

    ``keep``: on drift, the arm's statistics are scaled down to this many effective
    observations (means kept, uncertainty widened), so the arm is explored again.
    ``half_life``: feedback events on the drifted arm after which its contribution to
    ``drift_score`` has halved.
    """

    enabled: bool = True
    delta: float = 0.5
    threshold: float = 10.0
    warmup: int = 30
    keep: float = 3.0
    half_life: float = 100.0


DEFAULT_DRIFT: Final = DriftConfig()


@dataclass(frozen=True, slots=True)
class PageHinkley:
    """Two-sided Page-Hinkley detector state for one metric of one arm."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    up: float = 0.0
    down: float = 0.0

    def scale(self) -> float:
        """Running standard deviation, floored so a constant stream still has a scale."""
        variance = self.m2 / (self.n - 1) if self.n > 1 else 0.0
        return max(math.sqrt(variance), 0.01 * abs(self.mean), 1e-3)

    def update(self, x: float, config: DriftConfig) -> tuple[PageHinkley, Direction | None]:
        """The state after seeing ``x`` and the direction of a change detected by it, if any."""
        n = self.n + 1
        error = x - self.mean
        mean = self.mean + error / n
        m2 = self.m2 + error * (x - mean)
        up = down = 0.0
        if self.n >= config.warmup:
            z = error / self.scale()
            up = max(0.0, self.up + z - config.delta)
            down = max(0.0, self.down - z - config.delta)
        state = PageHinkley(n=n, mean=mean, m2=m2, up=up, down=down)
        if up > config.threshold:
            return state, "up"
        if down > config.threshold:
            return state, "down"
        return state, None

    def evidence(self, config: DriftConfig) -> float:
        """How close the detector is to signalling: 0 up to half the threshold, 1 at it."""
        half = config.threshold / 2.0
        return min(1.0, max(0.0, (max(self.up, self.down) - half) / half))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form."""
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "up": self.up, "down": self.down}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageHinkley:
        """Inverse of :meth:`to_dict`."""
        return cls(
            n=int(data.get("n", 0)),
            mean=float(data.get("mean", 0.0)),
            m2=float(data.get("m2", 0.0)),
            up=float(data.get("up", 0.0)),
            down=float(data.get("down", 0.0)),
        )


def recency(events_since: int, config: DriftConfig) -> float:
    """Weight 0..1 of a drift that happened ``events_since`` feedback events ago (1 = just now)."""
    return math.pow(0.5, max(0, events_since) / config.half_life)
