"""`invoke setup --background-builds`: one detached builder for the missing Go-built tools, and
whatever needs one of them waiting for it (``ops.core.tools.require``, ``require_tool``).

Real processes throughout: the real task in a subprocess, the real builder building kwok (the
cheapest Go tool) with ``install_go`` into a temporary tools cache whose Go module and build caches
are the real ones (so it takes seconds when they are warm), a builder that fails (Go may not
fetch modules: ``GOPROXY=off`` over an empty module cache), and a dead builder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke.context import Context

from ops.core import project, provision, tools
from ops.core.runner import Runner
from tests.conftest import BUILD_ORDER, GO_TOOLS, build_rank

KWOK = tools.CATALOGUE["kwok"]
REAL_GO = provision.go_dir()  # the real tools cache's Go caches (read before any test moves it)


@pytest.fixture
def temp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty tools cache (this process and the subprocesses it starts use it); a builder
    started in it is waited for (it ends by itself in seconds), killed after a minute."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_OPTIMIZER_OPS_CACHE", str(cache))
    yield cache
    state = tools.background_build() or {}
    pid = int(state.get("pid", os.getpid()))  # one test stands for a builder itself: not waited
    deadline = time.monotonic() + 60
    while pid != os.getpid() and tools.process_start(pid) == state.get("pid_start"):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.2)


@pytest.fixture
def warm_go_cache(temp_cache: Path) -> Path:
    """``temp_cache`` with the real Go module and build caches (Go's caches are safe to share)."""
    (temp_cache / "go").mkdir(parents=True)
    for name in ("mod", "build"):
        (REAL_GO / name).mkdir(parents=True, exist_ok=True)
        (temp_cache / "go" / name).symlink_to(REAL_GO / name)
    return temp_cache


def setup_task(*args: str, env: dict[str, str] | None = None) -> str:
    """``invoke setup ARGS`` as a user runs it; its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "setup", *args],
        cwd=project.ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process to stand for a builder (always stopped)."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _marker_for(pid: int, cache: Path) -> dict[str, object]:
    state: dict[str, object] = {
        "pid": pid,
        "pid_start": tools.process_start(pid),
        "tools": ["kwok"],
        "log": str(cache / "background-build.log"),
        "started": round(time.time(), 1),
        "status": "running",
    }
    provision.write_background_build_marker(state)
    return state


def test_dry_run_prints_the_plan_and_starts_nothing(temp_cache: Path) -> None:
    out = setup_task("--background-builds", "--only", "kwok", "--dry-run")
    assert "[dry-run] would build kwok in the background: " in out
    assert "-n 19 " in out
    assert " -m ops.core.provision build kwok > " in out
    assert str(temp_cache / "background-build.log") in out
    assert not temp_cache.exists() or not any(temp_cache.rglob("background-build*"))
    assert tools.which("kwok") is None


@pytest.mark.slow
@pytest.mark.go_tools  # shares the real Go caches: after the background build of the suite
def test_one_builder_installs_the_missing_go_tool_and_require_waits_for_it(
    warm_go_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    since = time.time()
    out = setup_task("--background-builds", "--only", "kwok")
    assert "building kwok in the background (pid " in out, out
    state = tools.background_build()
    assert state is not None
    pid = state["pid"]
    log = warm_go_cache / "background-build.log"
    assert f"(pid {pid}, nice 19; log: {log})" in out
    assert f"left building in the background: kwok (pid {pid}; log: {log})" in out
    assert state["tools"] == ["kwok"]
    # a second setup starts no other builder
    again = setup_task("--background-builds", "--only", "kwok")
    assert f"already building in the background (pid {pid})" in again or (
        "1/1 tools already installed" in again
    ), again
    building = tools.builder_running(tools.background_build())

    kwok = tools.require("kwok")  # waits for the builder

    assert kwok == warm_go_cache / "bin" / "kwok"
    if building:
        assert "waiting for the background build of kwok (log: " in capsys.readouterr().err
        waits = tools.background_build_waits().read_text().splitlines()
        assert json.loads(waits[-1])["tools"] == ["kwok"]
    final = tools.background_build()
    assert final is not None
    assert (final["pid"], final["status"], final["exit_code"]) == (pid, "ok", 0)
    assert final["built"].keys() == {"kwok"}
    assert final["seconds"] > 0
    assert provision.is_installed(KWOK)  # linked, and the sha256 install_go checked is recorded
    assert hashlib.sha256(kwok.read_bytes()).hexdigest() == KWOK.sha256
    version = subprocess.run([kwok, "--version"], capture_output=True, text=True, check=True)
    assert "0.8.0" in version.stdout + version.stderr
    assert final["log"] == str(log)
    built = log.read_text()
    assert built.count("kwok: go build") == 1
    assert "(1/1) kwok: done in" in built
    report = provision.background_build_report(since)
    assert report.startswith("background Go build of kwok: ok (exit 0) in "), report
    assert provision.background_build_report(time.time() + 60).endswith("was cached)")


@pytest.mark.slow
@pytest.mark.go_tools  # shares the real Go caches: after the background build of the suite
def test_setup_without_the_flag_waits_for_the_builder_instead_of_building_again(
    warm_go_cache: Path,
) -> None:
    setup_task("--background-builds", "--only", "kwok")
    said: list[str] = []
    done = provision.setup(Runner(Context(), echo=False), [KWOK], say=said.append)
    state = tools.background_build()
    assert state is not None
    assert state["status"] == "ok"
    log = Path(state["log"]).read_text()
    assert log.count("kwok: go build") == 1  # built once, by the builder
    # the build takes seconds, this setup started at once: it waited, then found kwok installed
    assert any(line.startswith("waiting for the background build of kwok") for line in said), said
    assert done == []
    assert provision.is_installed(KWOK)


@pytest.mark.slow
def test_a_failed_build_is_an_error_naming_the_tool_the_log_and_the_command(
    temp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "GOPROXY": "off"}  # an empty module cache and no proxy: go fails
    out = setup_task("--background-builds", "--only", "kwok", env=env)
    assert "building kwok in the background" in out
    log = temp_cache / "background-build.log"

    with pytest.raises(tools.BackgroundBuildError) as err:
        tools.require("kwok")

    message = str(err.value.message)
    assert message.startswith("'kwok' is missing: its background build")
    assert "failed: command failed with exit code 1: go mod download" in message
    assert f"see its log {log}" in message
    assert message.endswith("build it in the foreground with: uv run invoke setup --only kwok")
    assert err.value.code == 127
    assert isinstance(err.value, tools.ToolMissingError)
    state = tools.background_build()
    assert state is not None
    assert (state["status"], state["exit_code"]) == ("failed", 1)
    assert "kwok: command failed with exit code 1: go mod download" in log.read_text()
    assert "exit 1" in provision.background_build_report()
    assert "failed: kwok" in (provision.background_build_report())


def test_a_running_builder_is_not_started_twice_and_a_dead_one_is_named(
    temp_cache: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    state = _marker_for(sleeper.pid, temp_cache)
    said: list[str] = []
    done = provision.setup(Runner(Context(), echo=False), [KWOK], background=True, say=said.append)
    assert done == []
    assert f"already building in the background (pid {sleeper.pid}): kwok" in said[1]
    assert tools.background_build() == state  # no other builder
    with pytest.raises(tools.BackgroundBuildError, match=r"is still running after 1 s"):
        tools.wait_for_background_build(["kwok"], timeout=1, say=said.append)
    assert said[-1] == f"waiting for the background build of kwok (log: {state['log']})"

    sleeper.kill()  # not reaped yet: a zombie is not a builder either
    time.sleep(0.2)
    assert not tools.builder_running(state)
    sleeper.wait()
    with pytest.raises(tools.BackgroundBuildError) as err:
        tools.require("kwok")
    assert f"died (pid {sleeper.pid} is gone)" in str(err.value.message)
    assert "uv run invoke setup --only kwok" in str(err.value.message)


def test_a_reused_pid_is_not_taken_for_the_builder(
    temp_cache: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    state = _marker_for(sleeper.pid, temp_cache)
    assert tools.builder_running(state)
    assert not tools.builder_running({**state, "pid_start": "1"})


def test_tools_that_need_go_built_tools_run_last(request: pytest.FixtureRequest) -> None:
    """The order of this very session: every go_tools test after every other one, and those in
    the order the builder builds the tools they need (the cluster's before cosign's before the
    Compose stand-ins')."""
    items = request.session.items
    marked = [item.get_closest_marker(GO_TOOLS) is not None for item in items]
    assert marked == sorted(marked)
    ranks = [build_rank(item) for item in items]
    assert ranks == sorted(ranks)
    assert BUILD_ORDER.index("kube-apiserver") < BUILD_ORDER.index("cosign")
    assert BUILD_ORDER.index("cosign") < BUILD_ORDER.index("jaeger")


def test_a_wait_ends_once_its_tools_are_installed_while_the_builder_builds_on(
    temp_cache: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    state = {**_marker_for(sleeper.pid, temp_cache), "tools": ["kwok", "cosign"]}
    provision.write_background_build_marker(state)
    kwok = temp_cache / "bin" / "kwok"
    kwok.parent.mkdir(parents=True)
    kwok.write_text("#!/bin/sh\n")
    kwok.chmod(0o755)  # installed: the builder links each tool once it is built and checked
    said: list[str] = []
    started = time.monotonic()
    tools.wait_for_background_build(["kwok"], timeout=30, say=said.append)
    assert time.monotonic() - started < 2
    assert said == []  # nothing to wait for
    with pytest.raises(tools.BackgroundBuildError) as raised:
        tools.wait_for_background_build(["cosign"], timeout=1, say=said.append)
    assert raised.value.message.startswith("'cosign' is missing: its background build")
    assert "is still running after 1 s" in raised.value.message
    assert said == [f"waiting for the background build of cosign (log: {state['log']})"]


def test_ci_run_reports_the_background_build_and_the_waits(temp_cache: Path) -> None:
    """The README's test line leaves the Go builds to the builder, and `.ci/run`'s own report
    line (run as written there, with uv) prints the build's outcome and the seconds waited."""
    readme = (project.ROOT / "README.md").read_text().split("<!-- test-line -->", 1)[1]
    assert "uv run invoke setup --background-builds && " in readme.split("```", 2)[1]
    script = (project.ROOT / ".ci" / "run").read_text().splitlines()
    report = next(line for line in script if "ops.core.provision report" in line)
    # CI's python3 has the uv the README line installed; this venv's has not: the same uv, direct
    report = report.removesuffix(" ||").replace("python3 -m uv", str(tools.require("uv")))
    state = {**_marker_for(os.getpid(), temp_cache), "tools": ["etcd", "kwok"]}
    state.update(status="ok", exit_code=0, seconds=612.5, built={}, failed={})
    provision.write_background_build_marker(state)
    tools.background_build_waits().write_text('{"tools": ["kwok"], "seconds": 41.2}\n' * 2)
    for since, expected in (
        (0, "background Go build of etcd, kwok: ok (exit 0) in 612.5 s; waited for by tests "
         f"and tasks: 82 s (log: {temp_cache / 'background-build.log'})"),
        (time.time() + 60, "background Go build: none started (every Go-built tool was cached)"),
    ):  # fmt: skip
        done = subprocess.run(
            ["bash", "-c", f"started={since:.0f}; {report}"],
            cwd=project.ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == expected
