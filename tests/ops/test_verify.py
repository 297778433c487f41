"""``invoke verify``'s suite (ops/deploy/verify.py) against a real service: every check passes
on a healthy deployment, and a restart that closes the port (stop, then start) is caught with
the failed requests counted. Plus the rules for checks that cannot run and where the key comes
from. The local target's end-to-end test runs the whole task (`invoke verify --target local`)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest
from invoke.config import Config
from invoke.context import Context
from invoke.runners import Result

from ops.deploy import compose, systemd, targets, verify
from ops.deploy.base import Invocation, Target
from tests._support.invoke_context import Recorder
from tests._support.ports import free_port
from tests._support.service import RunningService, launch, service_command


class StopStart:
    """A target whose restart is the naive one: SIGTERM, then a new process on the same ports."""

    def __init__(self, service: RunningService, tmp_path: Path) -> None:
        self.service = service
        self.tmp_path = tmp_path
        self.restarts = 0

    def restart(self, c: Context) -> None:
        self.service.terminate()
        self.restarts += 1
        self.service = launch(self.tmp_path / f"restart-{self.restarts}", self.service.env)

    def service_command(
        self, c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
    ) -> Invocation:
        return Invocation([*service_command(), *args], self.service.env)

    def target(self) -> Target:
        def unused(*_: object, **__: object) -> int:
            raise AssertionError("verify must not deploy, report status or remove")

        return Target(
            "stop-start",
            "a test target",
            apply=unused,
            status=unused,
            down=unused,
            service_command=self.service_command,
            restart=self.restart,
        )


@pytest.fixture
def stop_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StopStart]:
    fake = StopStart(launch(tmp_path / "first"), tmp_path)
    target = fake.target()
    monkeypatch.setattr(targets, "get", lambda name: target)
    try:
        yield fake
    finally:
        fake.service.terminate()


def test_every_check_runs_and_a_stop_start_restart_fails_requests(
    stop_start: StopStart, capsys: pytest.CaptureFixture[str]
) -> None:
    service = stop_start.service
    ep = verify.Endpoint(service.http_url, service.metrics_url, service.api_key)
    outcomes = verify.run(Context(Config()), "stop-start", ep)
    verify.print_table("stop-start", outcomes)
    table = capsys.readouterr().out
    print(table)
    results = {outcome.check: outcome for outcome in outcomes}
    assert [o.check for o in outcomes] == ["health", "round trip", "metrics", "restart", "backup"]
    for check in ("health", "round trip", "metrics", "backup"):
        assert results[check].result == verify.OK, results[check]
    restart = results["restart"]
    assert restart.result == verify.FAIL, restart
    assert stop_start.restarts == 1
    assert "ConnectError" in restart.detail  # refused while the port was closed
    assert verify.failed(outcomes, strict=True) == [restart]
    assert "│ restart    │ FAIL   │" in table


def test_a_check_that_cannot_run_fails_only_when_strict_or_when_nothing_passed() -> None:
    ok = verify.Outcome("health", verify.OK, "ready")
    skipped = verify.Outcome("restart", verify.NOT_RUN, "no restart")
    assert verify.failed([ok, skipped], strict=False) == []
    assert verify.failed([ok, skipped], strict=True) == [skipped]
    assert verify.failed([skipped], strict=False) == [skipped]


def test_without_a_url_the_checks_say_why_they_did_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLM_OPTIMIZER_API_URL", raising=False)
    monkeypatch.delenv("LLM_OPTIMIZER_API_KEY", raising=False)
    ep = verify.endpoint(Context(Config()), "kubernetes")
    outcome = verify._run("health", lambda: verify.check_health(ep))
    assert outcome.result == verify.NOT_RUN
    assert outcome.detail == "no URL given (--url or LLM_OPTIMIZER_API_URL)"


def test_the_key_is_the_first_plain_one_of_the_keys_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_OPTIMIZER_API_KEY", raising=False)
    digest = hashlib.sha256(b"other").hexdigest()
    keys = tmp_path / "keys"
    keys.write_text(f"# keys\nsha256:{digest} read\nplain-key-0123 read,write\n")
    ep = verify.endpoint(
        Context(Config()), "systemd", url="http://127.0.0.1:1", api_key_file=str(keys)
    )
    assert ep.api_key == "plain-key-0123"
    keys.write_text(f"sha256:{digest}\n")
    ep = verify.endpoint(
        Context(Config()), "systemd", url="http://127.0.0.1:1", api_key_file=str(keys)
    )
    assert ep.api_key == ""
    assert "holds no plain-text key" in ep.why_no_key


def test_systemd_reads_the_units_environment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a systemd host `invoke verify --target systemd` needs no option: the ports and the keys
    file come from /etc/llm-optimizer/llm-optimizer.env (here a copy), else the defaults."""
    monkeypatch.delenv("LLM_OPTIMIZER_API_KEY", raising=False)
    keys = tmp_path / "api-keys"
    keys.write_text("unit-key-0123456789\n")
    env_file = tmp_path / "llm-optimizer.env"
    env_file.write_text(
        "# settings\n#LLM_OPTIMIZER_SERVER__HTTP_PORT=1\nLLM_OPTIMIZER_SERVER__METRICS_PORT=9190\n"
        f'LLM_OPTIMIZER_AUTH__API_KEYS_FILE="{keys}"\n'
    )
    monkeypatch.setattr(systemd, "ENV_FILE", env_file)
    ep = verify.endpoint(Context(Config()), "systemd")
    assert (ep.url, ep.metrics_url, ep.api_key) == (
        "http://127.0.0.1:8080",
        "http://127.0.0.1:9190/metrics",
        "unit-key-0123456789",
    )
    monkeypatch.setattr(systemd, "ENV_FILE", tmp_path / "absent.env")
    ep = verify.endpoint(Context(Config()), "systemd")
    assert (ep.url, ep.metrics_url, ep.api_key) == (
        "http://127.0.0.1:8080",
        "http://127.0.0.1:9090/metrics",
        "",
    )
    assert "names no keys file" in ep.why_no_key


def test_compose_restart_and_backup_command_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `invoke verify --target compose` runs (not run end to end here): the restart
    recreates the optimizer's containers, the backup lands in a host directory mounted into a
    throwaway container of the stack and is verified there."""
    monkeypatch.setenv("LLM_OPTIMIZER_OPS_STATE", str(tmp_path))
    c = Recorder(
        {
            r"backup create": Result(stdout='{"path": "/backups/llm-optimizer-backup-x.tar.gz"}'),
            r"backup verify": Result(stdout='{"ok": true}'),
        }
    )
    compose.restart(c)
    (up,) = c.commands
    assert up[-6:] == ["up", "--detach", "--force-recreate", "--no-deps", "--wait", "optimizer"]
    detail = verify.check_backup(c, "compose")
    host_dir = tmp_path / "backups" / "compose"
    assert detail == f"{host_dir}/llm-optimizer-backup-x.tar.gz created and verified"
    create, check = c.commands[1:]
    assert f"--volume={host_dir}:/backups" in create
    assert create[-5:] == ["backup", "create", "--json", "--dir", "/backups"]
    assert f"--volume={host_dir}:/backups" in check
    assert check[-4:] == ["backup", "verify", "/backups/llm-optimizer-backup-x.tar.gz", "--json"]


def test_a_key_file_that_is_not_text_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_OPTIMIZER_API_KEY", raising=False)
    binary = tmp_path / "keys"
    binary.write_bytes(b"\xff\xfe\x00key")
    found = verify.endpoint(
        Context(), "compose", url="http://127.0.0.1:1", api_key_file=str(binary)
    )
    assert found.api_key == ""
    assert "is not UTF-8 text" in found.why_no_key


def test_metrics_refused_at_first_are_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A metrics endpoint that refuses connections for a moment (a Service whose endpoints
    kube-proxy has not programmed yet) is scraped again within the wait; one that never
    answers still fails, with the connection error."""
    port = free_port()
    body = b"# nothing of the contract\n"

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    servers: list[http.server.HTTPServer] = []

    def serve_late() -> None:
        time.sleep(1.5)
        servers.append(http.server.HTTPServer(("127.0.0.1", port), Metrics))
        servers[0].serve_forever(poll_interval=0.1)

    late = threading.Thread(target=serve_late, daemon=True)
    late.start()
    endpoint = verify.Endpoint(metrics_url=f"http://127.0.0.1:{port}/metrics")
    monkeypatch.setattr(verify, "METRICS_WAIT_S", 3.0)
    try:
        with pytest.raises(verify.CheckFailedError):  # served, but not the contract's metrics
            verify.check_metrics(endpoint)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        late.join(timeout=5)
    never = verify.Endpoint(metrics_url=f"http://127.0.0.1:{free_port()}/metrics")
    monkeypatch.setattr(verify, "METRICS_WAIT_S", 1.0)
    with pytest.raises(httpx.ConnectError):
        verify.check_metrics(never)
