"""Steady decide + feedback load against a running service, for measuring restarts: used by
``invoke verify``'s restart check and the end-to-end tests (httpx and the standard library only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import httpx

WORKLOAD: Final = "verify-conformance"
ARMS: Final = (
    {"name": "small", "model": "small-model", "price": {"input_per_1k": 0.1, "output_per_1k": 0.2}},
    {"name": "large", "model": "large-model", "price": {"input_per_1k": 1.0, "output_per_1k": 2.0}},
)
TIMEOUT_S: Final = 30.0


@dataclass
class LoadFigures:
    """What the steady load saw: requests, failures (by kind), the worst latency, and the span
    from the first to the last failure."""

    requests: int = 0
    failed: int = 0
    worst_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # kind of failure -> how many
    first_failure: float | None = None
    last_failure: float | None = None
    decided: list[str] = field(default_factory=list)  # decision ids answered 200
    acknowledged: list[str] = field(default_factory=list)  # decision ids whose feedback got 202
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, seconds: float, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.worst_s = max(self.worst_s, seconds)
            if error is not None:
                now = time.monotonic()
                self.failed += 1
                self.errors[error] = self.errors.get(error, 0) + 1
                self.first_failure = self.first_failure or now
                self.last_failure = now

    def summary(self) -> str:
        text = (
            f"{self.requests} requests, {self.failed} failed, "
            f"worst latency {self.worst_s * 1000:.0f} ms"
        )
        if self.first_failure is None or self.last_failure is None:
            return text
        kinds = "; ".join(f"{count}x {kind}" for kind, count in self.errors.items())
        span = self.last_failure - self.first_failure
        return f"{text}; failures over {span:.1f} s: {kinds}"


def client(url: str, api_key: str) -> httpx.Client:
    """A keep-alive client of the REST API, as an application would hold one."""
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=TIMEOUT_S
    )


class SetupError(Exception):
    """The load could not start (the message says why)."""


def ensure_workload(http: httpx.Client) -> None:
    """Create the workload the load uses unless it exists."""
    created = http.post("/api/v1/workloads", json={"name": WORKLOAD, "arms": list(ARMS)})
    if created.status_code not in (201, 409):
        raise SetupError(f"creating {WORKLOAD}: HTTP {created.status_code} {created.text}")


def _timed(figures: LoadFigures, call: Callable[[], httpx.Response], expect: int) -> httpx.Response:
    began = time.monotonic()
    try:
        response = call()
    except httpx.HTTPError as error:
        figures.record(time.monotonic() - began, f"{type(error).__name__}: {error}"[:120])
        raise
    wrong = None if response.status_code == expect else f"HTTP {response.status_code}"
    figures.record(time.monotonic() - began, wrong)
    return response


def _feedback_call(http: httpx.Client, decision_id: str) -> Callable[[], httpx.Response]:
    body = {"decision_id": decision_id, "quality": 0.8, "cost_usd": 0.001, "latency_ms": 100}
    return lambda: http.post("/api/v1/feedback", json=body)


@contextmanager
def steady_load(
    url: str,
    api_key: str,
    *,
    workers: int = 2,
    pause_s: float = 0.01,
) -> Iterator[LoadFigures]:
    """Decide + feedback in ``workers`` threads (each a keep-alive client), until the block
    ends; a request not answered as the contract says (200 decide, 202 feedback) is failed."""
    figures = LoadFigures()
    stop = threading.Event()

    def work() -> None:
        with client(url, api_key) as http:
            while not stop.is_set():
                try:
                    decided = _timed(
                        figures, lambda: http.post(f"/api/v1/workloads/{WORKLOAD}/decide"), 200
                    )
                    if decided.status_code == 200:
                        decision_id = str(decided.json()["decision_id"])
                        figures.decided.append(decision_id)
                        answer = _timed(figures, _feedback_call(http, decision_id), 202)
                        if answer.status_code == 202:
                            figures.acknowledged.append(decision_id)
                except httpx.HTTPError:
                    pass  # recorded; keep going
                time.sleep(pause_s)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield figures
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2 * TIMEOUT_S)
