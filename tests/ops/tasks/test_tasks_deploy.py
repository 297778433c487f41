"""`invoke deploy`: the registry, prerequisites, dry-run plans and their errors (MockContext)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke.config import Config
from invoke.context import MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

from ops.core import project, tools
from ops.deploy import local as deploy_local
from ops.deploy import targets as deploy
from ops.deploy.base import Invocation, Target
from ops.deploy.prerequisites import Prerequisite
from ops.tasks import deploy as deploy_tasks
from ops.tasks.root import DEFAULT_CONFIG


def context(tmp_path: Path, run: Any = None, **local: Any) -> MockContext:
    """A MockContext with the real defaults, the local state dir under tmp_path."""
    config = Config(overrides={"llm_optimizer": {"local": {"state_dir": str(tmp_path), **local}}})
    config.load_collection(DEFAULT_CONFIG)
    return MockContext(config=config, run=run if run is not None else {}, repeat=True)


def test_dry_run_prints_every_step_of_the_local_plan_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = context(tmp_path / "state", http_port=18123, grpc_port=18124, metrics_port=18125)
    deploy_tasks.up(c, dry_run=True)
    out = capsys.readouterr().out
    assert "prerequisite: uv is installed: ok" in out
    steps = re.findall(r"^  (\d)\. (.*)$", out, re.MULTILINE)
    assert [n for n, _ in steps] == [str(i) for i in range(1, 8)]
    text = "\n".join(s for _, s in steps)
    state = tmp_path / "state"
    assert f"UV_PROJECT_ENVIRONMENT={state / 'venv'}" in text
    assert "sync --locked --package llm-optimizer-service --no-default-groups" in text
    assert f"{state / 'venv' / 'bin' / project.SERVICE_COMMAND} db upgrade" in text
    assert "LLM_OPTIMIZER_SERVER__HTTP_PORT=18123" in text
    assert f"LLM_OPTIMIZER_AUTH__API_KEYS_FILE={state / 'api-keys'}" in text
    assert "LLM_OPTIMIZER_ENVIRONMENT=development" in text
    assert "serve" in text
    assert "http://127.0.0.1:18123/health/ready" in text
    assert "dry run: nothing was changed" in out
    assert not state.exists() or not any(state.iterdir())


def test_prod_env_runs_the_service_in_production(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_tasks.up(context(tmp_path), env="prod", dry_run=True)
    assert "LLM_OPTIMIZER_ENVIRONMENT=production" in capsys.readouterr().out


def test_invoke_dry_flag_also_makes_deploy_a_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = context(tmp_path / "s")
    c.config.run.dry = True
    deploy_tasks.up(c)
    assert "dry run: nothing was changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "moon"}, "unknown --target 'moon'; choose one of: local, compose"),
        ({"env": "staging"}, "unknown environment 'staging'; choose one of: dev, prod"),
    ],
)
def test_bad_target_or_env_names_the_choices(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(Exit) as raised:
        deploy_tasks.up(context(tmp_path), dry_run=True, **kwargs)
    assert message in str(raised.value.message)
    assert raised.value.code == 1


def test_every_target_is_a_module_of_ops_deploy_with_the_one_interface() -> None:
    """Direct imports, no strings: each target module exports TARGET, and the registry holds
    exactly those, under their own names, in the order the docs list them."""
    assert list(deploy.TARGETS) == ["local", "compose", "kubernetes", "helm", "systemd"]
    for name, target in deploy.TARGETS.items():
        module = importlib.import_module(f"ops.deploy.{name}")
        assert module.TARGET is target
        assert target.name == name
        for function in (target.apply, target.status, target.down, target.service_command):
            assert function.__module__ == module.__name__, (name, function)


def test_status_and_down_go_to_the_named_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _recording_target(monkeypatch)
    assert deploy.status(context(tmp_path), target="fake") == 3
    deploy.down(context(tmp_path), target="fake", dry_run=True)
    assert calls == [{"status": True}, {"down": True, "dry_run": True}]
    with pytest.raises(Exit, match="unknown --target 'moon'"):
        deploy.status(context(tmp_path), target="moon")


def _recording_target(
    monkeypatch: pytest.MonkeyPatch, *prerequisites: Prerequisite
) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def apply(c: Any, *, env: str, dry_run: bool) -> None:
        calls.append({"env": env, "dry_run": dry_run})

    def status(c: Any) -> int:
        calls.append({"status": True})
        return 3

    def down(c: Any, *, dry_run: bool) -> None:
        calls.append({"down": True, "dry_run": dry_run})

    def service_command(c: Any, args: Any, *, mounts: Any, running: bool) -> Invocation:
        return Invocation(list(args))

    target = Target(
        "fake",
        "test",
        apply=apply,
        status=status,
        down=down,
        service_command=service_command,
        prerequisites=prerequisites,
    )
    monkeypatch.setattr(deploy, "TARGETS", {"fake": target})
    return calls


def test_a_missing_tool_stops_the_deploy_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _recording_target(monkeypatch, Prerequisite("tool", "no-such-tool-xyz"))
    with pytest.raises(Exit) as raised:
        deploy.run(context(tmp_path), target="fake", env="dev", dry_run=False)
    assert "deploy --target fake cannot start" in str(raised.value.message)
    assert "'no-such-tool-xyz' is not installed; install it with:" in str(raised.value.message)
    assert calls == []


def test_dry_run_with_a_missing_prerequisite_shows_the_plan_then_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _recording_target(monkeypatch, Prerequisite("tool", "no-such-tool-xyz"))
    with pytest.raises(Exit, match="dry run of --target fake shown above, but it could not run"):
        deploy.run(context(tmp_path), target="fake", env="prod", dry_run=True)
    assert calls == [{"env": "prod", "dry_run": True}]
    assert "prerequisite: no-such-tool-xyz is installed: MISSING" in capsys.readouterr().out


def test_an_engine_that_does_not_answer_is_reported_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docker` resolves to an existing file so the runner accepts it; the MockContext answers.
    monkeypatch.setattr(tools, "which", lambda name: Path(sys.executable))
    failed = Result(
        stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock", exited=1
    )
    c = context(tmp_path, run={re.compile(r".* info --format"): failed})
    problem = Prerequisite("docker-engine").problem(c)
    assert problem is not None
    assert "the Docker engine does not answer (Cannot connect to the Docker daemon" in problem
    assert "uv run invoke docker.engine --start" in problem
    ok = context(tmp_path, run={re.compile(r".* info --format"): Result(stdout="20.10.24\n")})
    assert Prerequisite("docker-engine").problem(ok) is None


def test_no_kube_context_is_reported_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools, "which", lambda name: Path(sys.executable))
    none_set = Result(stderr="error: current-context is not set", exited=1)
    c = context(tmp_path, run={re.compile(r".* config current-context"): none_set})
    problem = Prerequisite("kube-context").problem(c)
    assert problem is not None
    assert "no Kubernetes context is set" in problem
    assert "kubectl config use-context NAME" in problem


def test_root_and_systemd_host_checks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("ops.deploy.prerequisites.os.geteuid", lambda: 1000)
    problem = Prerequisite("root").problem(context(tmp_path))
    assert problem is not None
    assert "needs root" in problem
    monkeypatch.setattr("ops.deploy.prerequisites.os.geteuid", lambda: 0)
    assert Prerequisite("root").problem(context(tmp_path)) is None
    systemd = Prerequisite("systemd-host").problem(context(tmp_path))
    assert (systemd is None) == Path("/run/systemd/system").is_dir()


def test_local_ports_come_from_the_contract_and_bad_ports_are_refused(tmp_path: Path) -> None:
    config = Config()
    config.load_collection(DEFAULT_CONFIG)
    cfg = deploy_local.LocalConfig.from_context(MockContext(config=config))
    assert cfg.ports == {
        "http_port": project.HTTP_PORT,
        "grpc_port": project.GRPC_PORT,
        "metrics_port": project.METRICS_PORT,
    }
    with pytest.raises(Exit, match="INVOKE_LLM_OPTIMIZER_LOCAL_HTTP_PORT"):
        deploy_local.LocalConfig.from_context(context(tmp_path, http_port=70000))


def test_a_taken_port_names_the_setting_to_change(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cfg = deploy_local.LocalConfig.from_context(context(tmp_path, http_port=port))
        with pytest.raises(Exit) as raised:
            deploy_local.check_ports_free(cfg)
    message = str(raised.value.message)
    assert f"port {port} (http_port) on 127.0.0.1 is already in use" in message
    assert "INVOKE_LLM_OPTIMIZER_LOCAL_HTTP_PORT=PORT" in message


def test_keys_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    cfg = deploy_local.LocalConfig.from_context(context(tmp_path))
    key = deploy_local.ensure_keys_file(cfg)
    assert cfg.keys_file.stat().st_mode & 0o777 == 0o600
    assert deploy_local.ensure_keys_file(cfg) == key
    assert f"{key} read,write,admin" in cfg.keys_file.read_text()


def test_status_and_down_without_a_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = context(tmp_path)
    with pytest.raises(Exit) as raised:
        deploy_tasks.status(c)
    assert raised.value.code == 3
    assert "not running" in capsys.readouterr().out
    deploy_tasks.down(c)  # idempotent: nothing to stop is not an error
    assert "no local deployment is running" in capsys.readouterr().out
    (tmp_path / "service.pid").write_text("999999999\n")  # no such pid: a stale file
    deploy_tasks.down(c)
    assert "removed a stale pid file" in capsys.readouterr().out
    assert not (tmp_path / "service.pid").exists()


def test_each_targets_environment_mapping_covers_exactly_the_environments() -> None:
    """The environments are named once (ops/deploy/environments.py); what a target maps them to
    (compose files, chart values files) has exactly those keys."""
    from ops.deploy import helm as helm_target
    from ops.deploy.environments import ENVIRONMENTS
    from ops.docker import compose as compose_stack

    assert set(compose_stack.ENVIRONMENTS) == set(ENVIRONMENTS)
    assert set(helm_target.ENV_FILES) == set(ENVIRONMENTS)
