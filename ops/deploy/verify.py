"""``invoke verify --target T``: one conformance suite against a running deployment.

Every check talks to the deployment as a user would: the REST API with an API key the
deployment accepts, the metrics endpoint, the target's own restart, and the service's own CLI
where it runs (:mod:`ops.deploy.service_cli`). In order:

1. ``health``: ``GET /health/ready`` is 200 (and ``GET /health``'s status is shown);
2. ``round trip``: create the workload ``verify-conformance`` (kept; 409 when it exists), decide,
   send the feedback (202), and see it counted in the report;
3. ``metrics``: every metric of the contract (docs/contract.md, Metrics) is on ``/metrics``, with
   the contract's label names;
4. ``restart``: steady decide + feedback requests (:mod:`ops.deploy.load`) while the target
   restarts the service (``Target.restart``); no request may fail. The figures (requests,
   failed, worst latency) are in the detail. Where the target does not promise that (a
   development Compose stack: one optimizer, no proxy; ``compose.restart_not_guaranteed``) the
   row is "not guaranteed" with the figures and the reason, not a pass and not a failure; the
   service must still be ready afterwards;
5. ``backup``: ``backup create --json`` then ``backup verify`` of that archive.

Where the URL and the key come from: ``compose`` reads the running containers
(``compose.reach``; the metrics are scraped inside each replica); ``local`` reads its
deploy.json (host, ports) and its api-keys file; ``systemd`` reads the unit's environment
file (ports, the API keys file; else 8080 and 9090 on 127.0.0.1); on every target ``--url``,
``--metrics-url`` and ``--api-key-file`` come first, ``LLM_OPTIMIZER_API_URL`` and
``LLM_OPTIMIZER_API_KEY`` (the CLI's variables) last. A check that cannot run says why
("not run: …"); with ``strict`` (``--strict``, or ``CI`` set) that is a failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
from invoke.context import Context

from ops import monitoring
from ops.core import project
from ops.core.runner import Runner
from ops.deploy import compose, kubernetes, local, service_cli, systemd, targets
from ops.deploy.load import WORKLOAD, SetupError, client, ensure_workload, steady_load
from ops.k8s import kube

OK: Final = "ok"
FAIL: Final = "FAIL"
NOT_RUN: Final = "not run"
NOT_GUARANTEED: Final = "not guaranteed"  # measured, but the target does not promise it
METRICS_WAIT_S: Final = 10.0  # per-workload gauges appear with the next re-estimation cycle
SETTLE_S: Final = 1.0  # steady load before and after a restart
KNOWN_IN_A_ROW: Final = 4  # reports of a new workload in a row that show every replica knows it


@dataclass(frozen=True)
class Endpoint:
    """Where the deployment answers and the key it accepts; ``why_*`` say why one is missing."""

    url: str = ""
    metrics_url: str = ""
    api_key: str = ""
    why_no_url: str = "no URL given (--url or LLM_OPTIMIZER_API_URL)"
    why_no_metrics: str = "no metrics URL given (--metrics-url)"
    why_no_key: str = "no API key given (--api-key-file or LLM_OPTIMIZER_API_KEY)"
    # Where the metrics are read when no URL serves them (compose: inside each replica).
    scrape: Callable[[], dict[str, str]] | None = None


@dataclass(frozen=True)
class Outcome:
    """One row of the table."""

    check: str
    result: str  # OK, FAIL, NOT_RUN or NOT_GUARANTEED
    detail: str
    seconds: float = 0.0


class NotRunError(Exception):
    """The check cannot run on this deployment (the message says why)."""


class CheckFailedError(Exception):
    """The check ran and failed (the message says how)."""


class NotGuaranteedError(Exception):
    """The check ran; what it measures is not what this deployment promises (the message says
    why, with the figures): shown, not a failure."""


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
    if target == "compose":
        reached = compose.reach(c)
        found = Endpoint(
            url=url or reached.url or found.url,
            metrics_url=metrics_url,
            api_key=reached.api_key or found.api_key,
            why_no_url=reached.why_no_url,
            why_no_key=reached.why_no_key,
            scrape=None if metrics_url else (lambda: compose.scrape_replicas(c)),
        )
    if target == "systemd":
        unit_url, unit_metrics, unit_keys = systemd.endpoint(systemd.ENV_FILE)
        found = Endpoint(
            url=url or unit_url,
            metrics_url=metrics_url or unit_metrics,
            api_key=found.api_key,
            why_no_key=f"no API key given (--api-key-file; {systemd.ENV_FILE} names no keys file)",
        )
        api_key_file = api_key_file or (str(unit_keys) if unit_keys else "")
    if api_key_file:
        try:
            key = local.plain_key(Path(api_key_file).expanduser().read_text())
        except OSError as error:
            key, why = None, f"cannot read {api_key_file}: {error.strerror}"
        except UnicodeDecodeError:
            key, why = None, f"{api_key_file} is not UTF-8 text; write one key per line"
        else:
            why = f"{api_key_file} holds no plain-text key (only sha256: digests)"
        found = Endpoint(
            url=found.url,
            metrics_url=found.metrics_url,
            api_key=key or found.api_key,
            why_no_key=why,
            scrape=found.scrape,
        )
    return found


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


def _feedback_count(http: httpx.Client) -> int:
    report = http.get(f"/api/v1/workloads/{WORKLOAD}/report")
    if report.status_code != 200:
        raise CheckFailedError(f"report: HTTP {report.status_code} {report.text[:200]}")
    return sum(int(arm["feedback"]) for arm in report.json()["arms"])


def _until_served(http: httpx.Client) -> None:
    """Wait until the workload is served on several requests in a row: behind a proxy, a
    replica that did not create it knows it from its next reload cycle (1 s) only."""
    deadline, in_a_row = time.monotonic() + 10.0, 0
    while in_a_row < KNOWN_IN_A_ROW:
        status = http.get(f"/api/v1/workloads/{WORKLOAD}/report").status_code
        if status not in (200, 404):
            raise CheckFailedError(f"report: HTTP {status}")
        in_a_row = in_a_row + 1 if status == 200 else 0
        if status == 404 and time.monotonic() > deadline:
            raise CheckFailedError(f"{WORKLOAD} created but still unknown (404) after 10 s")
        if status == 404:
            time.sleep(0.2)


def check_round_trip(ep: Endpoint) -> str:
    _need(ep.url, ep.why_no_url)
    _need(ep.api_key, ep.why_no_key)
    with client(ep.url, ep.api_key) as http:
        ensure_workload(http)
        _until_served(http)
        before = _feedback_count(http)
        decided = http.post(f"/api/v1/workloads/{WORKLOAD}/decide", json={"context": {}})
        if decided.status_code != 200:
            raise CheckFailedError(f"decide: HTTP {decided.status_code} {decided.text[:200]}")
        decision = decided.json()
        feedback = http.post(
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
        after = _feedback_count(http)
        while after <= before and time.monotonic() < deadline:
            time.sleep(0.2)
            after = _feedback_count(http)
        if after <= before:
            raise CheckFailedError(
                f"the feedback was acknowledged but the report still counts {after}"
            )
    return f"decided arm {decision['arm']}, feedback 202, report counts {after}"


def _scrape_url(url: str) -> dict[str, str]:
    scrape = httpx.get(url, timeout=10.0)
    if scrape.status_code != 200:
        raise CheckFailedError(f"{url} answered {scrape.status_code}")
    return {url: scrape.text}


def check_metrics(ep: Endpoint) -> str:
    if ep.metrics_url:
        url = ep.metrics_url
        scrape: Callable[[], dict[str, str]] = lambda: _scrape_url(url)  # noqa: E731
    elif ep.scrape is not None:
        scrape = ep.scrape
    else:
        raise NotRunError(ep.why_no_metrics)
    expected = monitoring.contract_metrics()
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        try:
            sources = scrape()
        except httpx.ConnectError:
            # Refused: e.g. a Service kube-proxy has not programmed yet, right after a rollout
            # (tests/infra/node saw 0.6 s). Within the wait, as a series not there yet.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        # What Prometheus sees of the service: every replica's samples together (a replica
        # that served no decide yet has no labelled decide counter).
        missing = monitoring.missing_contract_metrics("\n".join(sources.values()))
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if missing:
        raise CheckFailedError("; ".join(missing))
    where = "" if len(sources) == 1 else f" across the {len(sources)} replicas' scrapes"
    return f"all {len(expected)} contract metrics present with their labels{where}"


def check_restart(c: Context, target: str, ep: Endpoint) -> str:
    restart = targets.get(target).restart
    if restart is None:
        raise NotRunError(f"the {target} target has no restart (ops/deploy/{target}.py)")
    _need(ep.url, ep.why_no_url)
    _need(ep.api_key, ep.why_no_key)
    with client(ep.url, ep.api_key) as http:
        ensure_workload(http)
    with steady_load(ep.url, ep.api_key) as figures:
        time.sleep(SETTLE_S)
        began = time.monotonic()
        restart(c)
        took = time.monotonic() - began
        time.sleep(SETTLE_S)
    ready = httpx.get(f"{ep.url}/health/ready", timeout=10.0).status_code
    detail = f"restart {took:.1f} s; {figures.summary()}"
    print(f"restart under load ({target}): {detail}", flush=True)
    if ready != 200 or figures.requests == 0:
        raise CheckFailedError(detail + ("" if ready == 200 else f"; ready {ready} afterwards"))
    unpromised = compose.restart_not_guaranteed(c) if target == "compose" else ""
    if unpromised:
        raise NotGuaranteedError(f"{unpromised}: {detail}")
    if figures.failed:
        raise CheckFailedError(detail)
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
    except NotGuaranteedError as reason:
        return Outcome(name, NOT_GUARANTEED, str(reason), time.monotonic() - began)
    except (CheckFailedError, SetupError, httpx.HTTPError, OSError, ValueError, KeyError) as error:
        text = str(error) or type(error).__name__
        return Outcome(name, FAIL, text, time.monotonic() - began)
    except SystemExit as error:  # invoke's Exit from a restart or a command
        return Outcome(name, FAIL, f"exit {error.code}", time.monotonic() - began)
    return Outcome(name, OK, detail, time.monotonic() - began)


CHECKS: Final = ("health", "round trip", "metrics", "restart", "backup")


def refusal(c: Context, target: str) -> str:
    """Why no check can run on ``target`` at all ("" when they can): kubernetes and helm on a
    cluster whose nodes are all kwok's simulated ones, where no container runs."""
    if target not in ("kubernetes", "helm"):
        return ""
    context = kube.configured_context(kubernetes.settings(c))
    if not kube.simulated_cluster(Runner(ctx=c, echo=False), context):
        return ""
    return (
        "every node of this cluster is simulated by kwok (`invoke cluster.up`): no container "
        "runs, so nothing can answer; verify needs a cluster whose nodes run containers, "
        "reached with --url, --metrics-url and --api-key-file (e.g. through kubectl "
        "port-forward svc/llm-optimizer)"
    )


def run(c: Context, target: str, ep: Endpoint) -> list[Outcome]:
    """Run every check against ``target`` in order; one row each."""
    targets.get(target)
    checks: dict[str, Callable[[], str]] = {
        "health": lambda: check_health(ep),
        "round trip": lambda: check_round_trip(ep),
        "metrics": lambda: check_metrics(ep),
        "restart": lambda: check_restart(c, target, ep),
        "backup": lambda: check_backup(c, target),
    }
    return [_run(name, checks[name]) for name in CHECKS]


def failed(outcomes: list[Outcome], *, strict: bool) -> list[Outcome]:
    """The rows that make the suite fail: a check that failed; one not run, too, when
    ``strict`` or when no check passed at all (nothing to verify is not a pass). A check whose
    property the target does not promise (NOT_GUARANTEED, with its figures) is not a failure."""
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
    styles = {OK: "green", FAIL: "bold red", NOT_RUN: "yellow", NOT_GUARANTEED: "yellow"}
    for outcome in outcomes:
        table.add_row(
            outcome.check,
            f"[{styles[outcome.result]}]{outcome.result}[/]",
            outcome.detail,
            f"{outcome.seconds:.1f} s",
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)
