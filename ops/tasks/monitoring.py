"""Invoke collection: monitoring — check everything under monitoring/, run a local stack.

`invoke monitoring.check` runs every check (promtool, amtool, the style of every alert, the
runbooks, the promtool test coverage, the dashboards' schema and queries, and the metric
cross-check against a running service). The logic lives in ops/monitoring/.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.core import project
from ops.core.runner import runner_for

LOCAL_SERVICE = f"127.0.0.1:{project.METRICS_PORT}"


@task(
    help={
        "metrics_url": "the running service's metrics URL for the cross-check "
        f"(default http://{LOCAL_SERVICE}/metrics, where `invoke deploy` runs it)",
        "offline": "skip the cross-check against a running service (says so in the output)",
    }
)
def check(c: Context, metrics_url: str = "", offline: bool = False) -> None:
    """Run every monitoring check; exit 1 naming each failed one."""
    from ops.monitoring import checks

    url = None if offline else (metrics_url or f"http://{LOCAL_SERVICE}/metrics")
    failed = checks.run_all(runner_for(c), metrics_url=url)
    if failed:
        raise Exit(f"monitoring checks failed: {'; '.join(failed)}", code=1)


@task
def dashboards(c: Context) -> None:
    """Regenerate monitoring/grafana/dashboards/*.json from ops/monitoring/dashboards.py."""
    from ops.monitoring import dashboards as generator

    for path in generator.write():
        print(f"wrote {path.relative_to(project.ROOT)}")


@task(
    help={
        "output": "where to write the rendered Alertmanager config",
        "webhook_url_file": "file whose first line is the webhook URL (a secret: never a "
        "command-line value)",
    }
)
def alertmanager_config(c: Context, output: str, webhook_url_file: str) -> None:
    """Render alertmanager.yml with the real webhook URL (deploy-time setting)."""
    from ops.monitoring import checks

    source = Path(webhook_url_file)
    if not source.is_file():
        raise Exit(f"webhook URL file {source} does not exist; write the URL into it", code=1)
    url = source.read_text().strip().splitlines()[0] if source.read_text().strip() else ""
    try:
        text = checks.render_alertmanager_config(url)
    except ValueError as exc:
        raise Exit(f"{exc} (read from {source})", code=1) from exc
    Path(output).write_text(text)
    problems = checks.amtool_check_config(runner_for(c), Path(output))
    if problems:
        raise Exit("\n".join(problems), code=1)
    print(f"wrote {output}")


@task(
    help={
        "service": f"host:port of the service's metrics endpoint (default {LOCAL_SERVICE})",
        "prometheus_port": "port for Prometheus on 127.0.0.1 (default 19090: the service "
        "already uses 9090)",
        "alertmanager_port": "port for Alertmanager on 127.0.0.1 (default 19093)",
        "webhook_url_file": "file with the webhook URL Alertmanager notifies (default: the "
        "committed placeholder, which never resolves)",
        "duration": "stop after this many seconds (default 0: run until Ctrl-C)",
        "scrape_interval": "how often Prometheus scrapes and evaluates the rules (default 15s)",
        "dry_run": "print the commands and the generated config, start nothing",
    }
)
def up(
    c: Context,
    service: str = LOCAL_SERVICE,
    prometheus_port: int = 19090,
    alertmanager_port: int = 19093,
    webhook_url_file: str = "",
    duration: float = 0,
    scrape_interval: str = "15s",
    dry_run: bool = False,
) -> None:
    """Run Prometheus and Alertmanager here, against a running service, with the repo's rules."""
    import yaml

    from ops import monitoring as mon
    from ops.monitoring import checks, stack

    runner = runner_for(c, dry_run=dry_run)
    prometheus_address = f"127.0.0.1:{prometheus_port}"
    alertmanager_address = f"127.0.0.1:{alertmanager_port}"
    state = project.state_dir() / "monitoring"
    config = stack.prometheus_config(
        self_address=prometheus_address,
        targets={mon.SERVICE_JOB: [service]},
        alertmanager=alertmanager_address,
        rule_files=[str(path) for path in mon.rule_files()],
        scrape_interval=scrape_interval,
    )
    am_text = mon.ALERTMANAGER_CONFIG.read_text()
    if webhook_url_file:
        am_text = checks.render_alertmanager_config(Path(webhook_url_file).read_text().strip())
    prometheus_cmd = stack.prometheus_argv(
        state / "prometheus.yml", state / "prometheus-data", prometheus_address
    )
    alertmanager_cmd = stack.alertmanager_argv(
        state / "alertmanager.yml", state / "alertmanager-data", alertmanager_address
    )
    if runner.dry_run:
        print(yaml.safe_dump(config, sort_keys=False))
        runner.run(alertmanager_cmd)
        runner.run(prometheus_cmd)
        return
    stack.write_yaml(state / "prometheus.yml", config)
    (state / "alertmanager.yml").write_text(am_text)
    runner.run(["promtool", "check", "config", str(state / "prometheus.yml")], capture=True)
    runner.run(["amtool", "check-config", str(state / "alertmanager.yml")], capture=True)
    servers: list[stack.Server] = []
    # The servers run in their own sessions; SIGTERM to invoke must stop them like Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        servers.append(stack.start("alertmanager", alertmanager_cmd, log_dir=state))
        stack.wait_http(servers[-1], f"http://{alertmanager_address}/-/ready")
        servers.append(stack.start("prometheus", prometheus_cmd, log_dir=state))
        stack.wait_http(servers[-1], f"http://{prometheus_address}/-/ready")
        print(f"Prometheus   http://{prometheus_address}  (scraping {service})")
        print(f"Alertmanager http://{alertmanager_address}")
        print(f"logs and data in {state}; Ctrl-C stops both", flush=True)
        deadline = time.monotonic() + duration if duration > 0 else None
        while all(server.running() for server in servers):
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        for server in servers:
            if not server.running():
                raise Exit(f"{server.name} stopped unexpectedly:\n{server.log_tail()}", code=1)
    except RuntimeError as exc:
        raise Exit(str(exc), code=1) from exc
    except KeyboardInterrupt:
        print("stopping")
    finally:
        for server in reversed(servers):
            server.stop()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
