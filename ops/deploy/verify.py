"""``invoke verify --target T``: one conformance suite against a running deployment.

Every check talks to the deployment as a user would: the REST API with an API key the
deployment accepts, the metrics endpoint, the target's own restart, and the service's own CLI
where it runs (:mod:`ops.deploy.service_cli`). In order:

1. ``health``: ``GET /health/ready`` is 200 (and ``GET /health``'s status is shown);
2. ``round trip``: create the workload ``verify-conformance`` (kept; 409 when it exists), decide,
   send the feedback (202), and see it counted in the report;
3. ``metrics``: every metric of the contract (docs/contract.md, Metrics) is on ``/metrics``, with
   the contract's label names;
4. ``restart``: steady decide + feedback requests while the target restarts the service
   (``Target.restart``); no request may fail. The figures (requests, failed, worst latency) are
   in the detail;
5. ``backup``: ``backup create --json`` then ``backup verify`` of that archive.

Where the URL and the key come from: ``local`` reads its deploy.json (host, ports) and its
api-keys file; every target takes ``--url``, ``--metrics-url`` and ``--api-key-file`` (else
``LLM_OPTIMIZER_API_URL`` and ``LLM_OPTIMIZER_API_KEY``, the CLI's variables). A check that cannot
run says why ("not run: …"); with ``strict`` (``--strict``, or ``CI`` set) that is a failure.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
from invoke.context import Context

from ops import monitoring
from ops.core import project
from ops.core.runner import Runner
from ops.deploy import local, service_cli, targets

WORKLOAD: Final = "verify-conformance"
ARMS: Final = (
    {"name": "small", "model": "small-model", "price": {"input_per_1k": 0.1, "output_per_1k": 0.2}},
    {"name": "large", "model": "large-model", "price": {"input_per_1k": 1.0, "output_per_1k": 2.0}},
)
OK: Final = "ok"
FAIL: Final = "FAIL"
NOT_RUN: Final = "not run"
METRICS_WAIT_S: Final = 10.0  # per-workload gauges appear with the next re-estimation cycle
SETTLE_S: Final = 1.0  # steady load before and after a restart


@dataclass(frozen=True)
class Endpoint:
    """Where the deployment answers and the key it accepts; ``why_*`` say why one is missing."""

    url: str = ""
    metrics_url: str = ""
    api_key: str = ""
    why_no_url: str = "no URL given (--url or LLM_OPTIMIZER_API_URL)"
    why_no_metrics: str = "no metrics URL given (--metrics-url)"
    why_no_key: str = "no API key given (--api-key-file or LLM_OPTIMIZER_API_KEY)"


@dataclass(frozen=True)
class Outcome:
    """One row of the table."""

    check: str
    result: str  # OK, FAIL or NOT_RUN
    detail: str
    seconds: float = 0.0


class NotRunError(Exception):
    """The check cannot run on this deployment (the message says why)."""


class CheckFailedError(Exception):
    """The check ran and failed (the message says how)."""


def endpoint(
    c: Context, target: str, *, url: str = "", metrics_url: str = "", api_key_file: str = ""
) -> Endpoint:
    """The deployment's URLs and API key: the options first, then what the target records
    (local: deploy.json and the api-keys file), then the CLI's environment variables."""
    found = Endpoint(
        url=url or os.environ.get(project.env("api_url"), ""),
        metrics_url=metrics_url,
        api_key=os.environ.get(project.env("api_key"), ""),
    )
    if target == "local":
        cfg, record = local.deployed_config(c)
        if not record:
            return Endpoint(
                why_no_url=f"nothing deployed locally ({cfg.record_file} absent)",
                why_no_metrics="nothing deployed locally",
                why_no_key="nothing deployed locally",
            )
        key = local.plain_key(cfg.keys_file.read_text()) if cfg.keys_file.exists() else None
        found = Endpoint(
            url=url or cfg.url(),
            metrics_url=metrics_url or cfg.url("metrics_port", "/metrics"),
            api_key=key or found.api_key,
            why_no_key=f"{cfg.keys_file} holds no plain-text key",
        )
    if api_key_file:
        key = local.plain_key(Path(api_key_file).expanduser().read_text())
        found = Endpoint(
            url=found.url,
            metrics_url=found.metrics_url,
            api_key=key or "",
            why_no_key=f"{api_key_file} holds no plain-text key (only sha256: digests)",
        )
    return found


# --- steady load --------------------------------------------------------------------------------


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


def _client(ep: Endpoint) -> httpx.Client:
    return httpx.Client(
        base_url=ep.url, headers={"Authorization": f"Bearer {ep.api_key}"}, timeout=15.0
    )


def _feedback_call(client: httpx.Client, decision_id: str) -> Callable[[], httpx.Response]:
    body = {"decision_id": decision_id, "quality": 0.8, "cost_usd": 0.001, "latency_ms": 100}
    return lambda: client.post("/api/v1/feedback", json=body)


@contextmanager
def steady_load(
    ep: Endpoint, workload: str = WORKLOAD, *, workers: int = 2, pause_s: float = 0.01
) -> Iterator[LoadFigures]:
    """Decide + feedback in ``workers`` threads (each a keep-alive client, as an application
    would use), until the block ends; every request that is not answered as the contract says
    (200 decide, 202 feedback) counts as failed."""
    figures = LoadFigures()
    stop = threading.Event()

    def work() -> None:
        with _client(ep) as client:
            while not stop.is_set():
                try:
                    decided = _timed(
                        figures, lambda: client.post(f"/api/v1/workloads/{workload}/decide"), 200
                    )
                    if decided.status_code == 200:
                        _timed(figures, _feedback_call(client, decided.json()["decision_id"]), 202)
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
            thread.join(timeout=30)


# --- the checks ---------------------------------------------------------------------------------


def _need(value: str, why: str) -> str:
    if not value:
        raise NotRunError(why)
    return value


def check_health(ep: Endpoint) -> str:
    url = _need(ep.url, ep.why_no_url)
    ready = httpx.get(f"{url}/health/ready", timeout=10.0)
    if ready.status_code != 200:
        raise CheckFailedError(f"/health/ready answered {ready.status_code}: {ready.text[:200]}")
    health = httpx.get(f"{url}/health", timeout=10.0)
    status = health.json().get("status", "?") if health.status_code in (200, 503) else "?"
    return f"ready; /health status {status}"


def ensure_workload(client: httpx.Client) -> None:
    """Create the conformance workload unless it exists."""
    created = client.post("/api/v1/workloads", json={"name": WORKLOAD, "arms": list(ARMS)})
    if created.status_code not in (201, 409):
        raise CheckFailedError(f"creating {WORKLOAD}: HTTP {created.status_code} {created.text}")


def _feedback_count(client: httpx.Client) -> int:
    report = client.get(f"/api/v1/workloads/{WORKLOAD}/report")
    if report.status_code != 200:
        raise CheckFailedError(f"report: HTTP {report.status_code} {report.text[:200]}")
    return sum(int(arm["feedback"]) for arm in report.json()["arms"])


def check_round_trip(ep: Endpoint) -> str:
    _need(ep.url, ep.why_no_url)
    _need(ep.api_key, ep.why_no_key)
    with _client(ep) as client:
        ensure_workload(client)
        before = _feedback_count(client)
        decided = client.post(f"/api/v1/workloads/{WORKLOAD}/decide", json={"context": {}})
        if decided.status_code != 200:
            raise CheckFailedError(f"decide: HTTP {decided.status_code} {decided.text[:200]}")
        decision = decided.json()
        feedback = client.post(
            "/api/v1/feedback",
            json={
                "decision_id": decision["decision_id"],
                "quality": 0.9,
                "cost_usd": 0.002,
                "latency_ms": 120,
                "input_tokens": 100,
                "output_tokens": 50,
            },
        )
        if feedback.status_code != 202:
            raise CheckFailedError(f"feedback: HTTP {feedback.status_code} {feedback.text[:200]}")
        deadline = time.monotonic() + 10.0
        after = _feedback_count(client)
        while after <= before and time.monotonic() < deadline:
            time.sleep(0.2)
            after = _feedback_count(client)
        if after <= before:
            raise CheckFailedError(
                f"the feedback was acknowledged but the report still counts {after}"
            )
    return f"decided arm {decision['arm']}, feedback 202, report counts {after}"


def check_metrics(ep: Endpoint) -> str:
    url = _need(ep.metrics_url, ep.why_no_metrics)
    expected = monitoring.contract_metrics()
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        scrape = httpx.get(url, timeout=10.0)
        if scrape.status_code != 200:
            raise CheckFailedError(f"{url} answered {scrape.status_code}")
        missing = monitoring.missing_contract_metrics(scrape.text)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if missing:
        raise CheckFailedError("; ".join(missing))
    return f"all {len(expected)} contract metrics present with their labels"


def check_restart(c: Context, target: str, ep: Endpoint) -> str:
    restart = targets.get(target).restart
    if restart is None:
        raise NotRunError(f"the {target} target has no restart (ops/deploy/{target}.py)")
    _need(ep.url, ep.why_no_url)
    _need(ep.api_key, ep.why_no_key)
    with _client(ep) as client:
        ensure_workload(client)
    with steady_load(ep) as figures:
        time.sleep(SETTLE_S)
        began = time.monotonic()
        restart(c)
        took = time.monotonic() - began
        time.sleep(SETTLE_S)
    ready = httpx.get(f"{ep.url}/health/ready", timeout=10.0).status_code
    detail = f"restart {took:.1f} s; {figures.summary()}"
    print(f"restart under load ({target}): {detail}", flush=True)
    if figures.failed or ready != 200 or figures.requests == 0:
        raise CheckFailedError(detail + ("" if ready == 200 else f"; ready {ready} afterwards"))
    return detail


def _compose_backup_dir() -> Path:
    host = project.state_dir() / "backups" / "compose"
    host.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the image's user must be able to write the archive there
        os.chown(host, project.IMAGE_UID, project.IMAGE_UID)
    return host


def _service(c: Context, target: str, args: list[str], mounts: dict[Path, str]) -> str:
    call = service_cli.invocation(c, target, args, mounts=mounts)
    if call.service_command is not None and not call.service_command.exists():
        raise NotRunError(f"{call.service_command} does not exist (nothing deployed)")
    result = Runner(ctx=c).run(call.argv, env=call.env, cwd=call.cwd, check=False, capture=True)
    assert result is not None  # never a dry run
    if result.exited != 0:
        raise CheckFailedError(
            f"{' '.join(args[:2])} exited {result.exited}: "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )
    return str(result.stdout)


def check_backup(c: Context, target: str) -> str:
    args, mounts = ["backup", "create", "--json"], {}
    host = None
    if target == "compose":
        host = _compose_backup_dir()
        mounts = {host: service_cli.COMPOSE_BACKUP_DIR}
        args += ["--dir", service_cli.COMPOSE_BACKUP_DIR]
    created = json.loads(_service(c, target, args, mounts))
    path = str(created["path"])
    verified = json.loads(_service(c, target, ["backup", "verify", path, "--json"], mounts))
    if not verified.get("ok"):
        raise CheckFailedError(f"backup verify said: {verified}")
    shown = host / Path(path).name if host is not None else path
    return f"{shown} created and verified"


# --- the suite ----------------------------------------------------------------------------------


def _run(name: str, check: Callable[[], str]) -> Outcome:
    began = time.monotonic()
    try:
        detail = check()
    except NotRunError as reason:
        return Outcome(name, NOT_RUN, str(reason), time.monotonic() - began)
    except (CheckFailedError, httpx.HTTPError, OSError, ValueError, KeyError) as error:
        text = str(error) or type(error).__name__
        return Outcome(name, FAIL, text, time.monotonic() - began)
    except SystemExit as error:  # invoke's Exit from a restart or a command
        return Outcome(name, FAIL, f"exit {error.code}", time.monotonic() - began)
    return Outcome(name, OK, detail, time.monotonic() - began)


def run(c: Context, target: str, ep: Endpoint) -> list[Outcome]:
    """Run every check against ``target`` in order; one row each."""
    targets.get(target)
    return [
        _run("health", lambda: check_health(ep)),
        _run("round trip", lambda: check_round_trip(ep)),
        _run("metrics", lambda: check_metrics(ep)),
        _run("restart", lambda: check_restart(c, target, ep)),
        _run("backup", lambda: check_backup(c, target)),
    ]


def failed(outcomes: list[Outcome], *, strict: bool) -> list[Outcome]:
    """The rows that make the suite fail: a check that failed; one not run, too, when
    ``strict`` or when no check passed at all (nothing to verify is not a pass)."""
    nothing_passed = all(outcome.result != OK for outcome in outcomes)
    bad = {FAIL, NOT_RUN} if strict or nothing_passed else {FAIL}
    return [outcome for outcome in outcomes if outcome.result in bad]


def print_table(target: str, outcomes: list[Outcome]) -> None:
    """The table: check, result, detail, time."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"invoke verify --target {target}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    table.add_column("time", justify="right")
    styles = {OK: "green", FAIL: "bold red", NOT_RUN: "yellow"}
    for outcome in outcomes:
        table.add_row(
            outcome.check,
            f"[{styles[outcome.result]}]{outcome.result}[/]",
            outcome.detail,
            f"{outcome.seconds:.1f} s",
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)
