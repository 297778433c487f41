"""``server.workers``: one supervisor, N worker processes on the same ports, real processes on
127.0.0.1 sharing one PostgreSQL as replicas do (docs/service.md, "Workers").

The module shares one PostgreSQL and one 2-worker service (in file order); the last tests kill
a worker and then stop the service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests._support.postgres import PostgresServer, postgres_server
from tests._support.service import START_TIMEOUT, RunningService, launch, service_command
from tests._support.tools import require_tool

ARMS = [{"name": name, "model": f"model-{name}"} for name in ("a", "b", "c")]
REQUESTS = 60


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def _metrics_dir(worker: int) -> Path:
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    for item in environ:
        if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
            return Path(item.split(b"=", 1)[1].decode())
    raise AssertionError(f"worker {worker} has no PROMETHEUS_MULTIPROC_DIR")


def _decides_per_worker(directory: Path) -> dict[int, float]:
    """http_requests_total of the decide route, per worker pid (the worker's own file)."""
    counts: dict[int, float] = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.split("_")[1])
        values = MmapedDict.read_all_values_from_file(str(file))  # type: ignore[no-untyped-call]
        for key, value, *_ in values:
            if '"http_requests_total"' in key and "decide" in key:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def _scraped_decides(service: RunningService) -> float:
    total = 0.0
    for line in httpx.get(service.metrics_url, timeout=10).text.splitlines():
        if line.startswith("http_requests_total{") and "decide" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Workers:
    def __init__(self, postgres: PostgresServer, url: str, service: RunningService) -> None:
        self.postgres, self.url, self.service = postgres, url, service

    @property
    def pids(self) -> list[int]:
        return _children(self.service.process.pid)

    def rows(self, query: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.postgres.dsn(self.url.rsplit("/", 1)[1])) as connection:
            return list(connection.execute(query).fetchall())


def _all_ready(service: RunningService) -> bool:
    if service.process.poll() is not None:
        raise AssertionError(f"the supervisor exited; log:\n{service.logs()[-4000:]}")
    return '"all workers ready"' in service.logs()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    with postgres_server(require_tool) as postgres:
        url = postgres.create_database()
        env = {
            "LLM_OPTIMIZER_DATABASE__URL": url,
            "LLM_OPTIMIZER_SERVER__WORKERS": "2",
            "LLM_OPTIMIZER_SERVER__GRACE_PERIOD": "5",
        }
        service = launch(tmp_path_factory.mktemp("workers"), env)
        try:
            _wait("all workers ready", lambda: _all_ready(service), START_TIMEOUT)
            yield Workers(postgres, url, service)
        finally:
            service.terminate(20)


pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_workers_serve_decide_and_feedback_on_one_database(workers: Workers) -> None:
    service = workers.service
    assert len(workers.pids) == 2
    with service.client() as client:
        created = client.post("/api/v1/workloads", json={"name": "shared", "arms": ARMS})
        assert created.status_code == 201, created.text

    def fresh() -> httpx.Client:
        # a new connection each time: the kernel spreads connections over the workers' sockets
        headers = {**service.headers, "Connection": "close"}
        return httpx.Client(base_url=service.http_url, headers=headers, timeout=30)

    # the other worker learns the workload from the database within its cycle interval
    def decided_everywhere() -> bool:
        with fresh() as client:
            return all(client.post("/api/v1/workloads/shared/decide").is_success for _ in range(10))

    _wait("the workload on both workers", decided_everywhere, 5)
    ids = []
    with fresh() as client:
        for _ in range(REQUESTS):
            answer = client.post("/api/v1/workloads/shared/decide")
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["decision_id"])
    with fresh() as client:
        for decision_id in ids:  # often on the other worker than the one that decided
            body = {"decision_id": decision_id, "quality": 0.8, "cost_usd": 0.001, "latency_ms": 50}
            answer = client.post("/api/v1/feedback", json=body)
            assert answer.status_code == 202, answer.text
    assert workers.rows("SELECT count(*) FROM feedback") == [(REQUESTS,)]
    per_worker = _decides_per_worker(_metrics_dir(workers.pids[0]))
    assert sorted(per_worker) == workers.pids, per_worker  # both workers decided
    assert all(count > 0 for count in per_worker.values()), per_worker
    _wait(
        "every decision in the shared decision log",
        lambda: workers.rows("SELECT count(*) FROM decisions")[0][0] >= REQUESTS,  # type: ignore[operator]
        5,
    )


def test_metrics_sum_both_workers(workers: Workers) -> None:
    per_worker = _decides_per_worker(_metrics_dir(workers.pids[0]))
    scraped = _scraped_decides(workers.service)
    assert scraped == sum(per_worker.values()) >= REQUESTS
    text = httpx.get(workers.service.metrics_url, timeout=10).text
    assert "process_cpu_seconds_total" in text
    assert "optimization_decisions_total{" in text


def test_a_worker_that_dies_is_restarted_on_its_socket(workers: Workers) -> None:
    before = workers.pids
    os.kill(before[0], signal.SIGKILL)
    _wait("a new worker", lambda: len(workers.pids) == 2 and workers.pids != before, 10)
    _wait(
        "the new worker is ready", lambda: workers.service.logs().count('"worker ready"') >= 3, 60
    )
    service = workers.service
    headers = {**service.headers, "Connection": "close"}
    with httpx.Client(base_url=service.http_url, headers=headers, timeout=30) as client:
        for _ in range(20):
            assert client.post("/api/v1/workloads/shared/decide").status_code == 200
    assert '"a worker exited; restarting it"' in service.logs()


def test_sigterm_stops_every_worker(workers: Workers) -> None:
    pids = workers.pids
    assert workers.service.terminate(20) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert workers.service.logs().count('"stopped"') >= 3  # both workers and the supervisor


def test_sqlite_with_workers_is_refused_with_the_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
    env.update({"LLM_OPTIMIZER_SERVER__WORKERS": "2", "LLM_OPTIMIZER_DATA_DIR": str(tmp_path)})
    done = subprocess.run(
        [*service_command(), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "server.workers above 1 needs a database server, not the embedded SQLite" in message
    assert "LLM_OPTIMIZER_DATABASE__URL=postgresql+psycopg://" in message
    assert "LLM_OPTIMIZER_SERVER__WORKERS=1" in message


@pytest.mark.parametrize("value", ["0", "65", "two", "-1"])
def test_workers_out_of_bounds_are_refused(tmp_path: Path, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
    env.update({"LLM_OPTIMIZER_SERVER__WORKERS": value, "LLM_OPTIMIZER_DATA_DIR": str(tmp_path)})
    done = subprocess.run(
        [*service_command(), "config", "validate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "server.workers (LLM_OPTIMIZER_SERVER__WORKERS)" in done.stderr
