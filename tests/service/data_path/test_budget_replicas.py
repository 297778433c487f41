"""A budget's spend counter is shared by replicas: two service processes on one PostgreSQL (no
Redis), the spend recorded only through replica A, and replica B's own decisions are paced by
it — B shifts the budgeted workload to the cheaper arm, while an unbudgeted twin with the same
evidence keeps the better, dearer arm on B. Both replicas report the same spend."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from tests._support.api import WORKLOADS, create_workload, round_trips
from tests._support.service import START_TIMEOUT, RunningService, wait_ready

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ARMS = [{"name": "large", "model": "m-large"}, {"name": "small", "model": "m-small"}]
# small costs a tenth of large, and enough that the round trips below pass a $1 day whichever
# arms they get: once spend is ahead of the day's plan, pacing sends every decision to small, so
# a test that needed several large ones could stall below $1.
OUTCOME = {"large": {"quality": 0.9, "cost_usd": 0.5, "latency_ms": 800.0},
           "small": {"quality": 0.7, "cost_usd": 0.05, "latency_ms": 200.0}}  # fmt: skip


def _outcome(_index: int, decision: Mapping[str, Any]) -> Mapping[str, float]:
    return OUTCOME[decision["arm"]]


def _share(client: httpx.Client, name: str, arm: str, decisions: int) -> float:
    chosen = [client.post(f"{WORKLOADS}/{name}/decide").json()["arm"] for _ in range(decisions)]
    return chosen.count(arm) / decisions


def test_replicas_pace_from_the_shared_spend(
    service_factory: Callable[..., RunningService], postgres_url: str
) -> None:
    env = {"LLM_OPTIMIZER_DATABASE__URL": postgres_url}
    first = service_factory(env, wait=False)  # both at once: each migrates under the lock
    second = service_factory(env)
    wait_ready(first.http_url, first.process, first.log_path, START_TIMEOUT)
    with first.client() as a, second.client() as b:
        create_workload(a, "shared-budget", ARMS, budget={"daily_usd": 1})
        create_workload(a, "no-budget", ARMS)
        decisions = round_trips(a, "shared-budget", 24, _outcome)  # all spend through A
        round_trips(a, "no-budget", 24, _outcome)
        spent = sum(OUTCOME[d["arm"]]["cost_usd"] for d in decisions)
        assert spent > 1.0, decisions  # ahead of any plan for a $1 day: 24 trips at $0.05+

        # B recorded nothing; its re-estimation cycles (every 1 s) read the workloads, A's spend
        # and A's evidence. A cycle that ran while A's round trips were under way left B with
        # part of the evidence until the next one (on a busy machine, seconds later)
        deadline = time.monotonic() + 30
        for name in ("shared-budget", "no-budget"):
            while b.post(f"{WORKLOADS}/{name}/decide").status_code != 200:
                assert time.monotonic() < deadline, f"replica B never loaded {name}"
                time.sleep(0.2)
        while _share(b, "shared-budget", "small", 20) < 0.9:
            assert time.monotonic() < deadline, "replica B never paced the shared spend"
            time.sleep(0.5)
        while _share(b, "no-budget", "large", 20) < 0.7:  # with part of it: about half
            assert time.monotonic() < deadline, "replica B never loaded A's evidence"
            time.sleep(0.5)
        assert _share(b, "shared-budget", "small", 100) > 0.9
        assert _share(b, "no-budget", "large", 100) > 0.7  # same evidence, no budget: large
        pacing = [c.get(f"{WORKLOADS}/shared-budget/report").json()["pacing"] for c in (a, b)]
        assert pacing[0]["spent_usd"] == pytest.approx(spent)
        assert pacing[1]["spent_usd"] == pytest.approx(spent)
        assert pacing[1]["multiplier"] > 1.0
