"""The engine helper, the base-image cache, and the docker/compose tasks' command lines."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest
from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project
from ops.core.project import ROOT
from ops.core.runner import Runner
from ops.docker import base_image, build_context, commands
from ops.docker import engine as docker_engine
from ops.tasks import compose as compose_tasks
from ops.tasks import docker as docker_tasks
from tests._support.tools import require_tool


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    uv = require_tool("uv")
    return subprocess.run(
        [str(uv), "run", "--frozen", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _context(**overrides: object) -> Context:
    config = {"registry": "", "image_tag": "", **overrides}
    return Context(Config(overrides={"llm_optimizer": config, "run": {"dry": False}}))


@pytest.mark.docker
@pytest.mark.timeout(1200)  # may debootstrap the base image first
def test_engine_start_is_idempotent_and_base_image_second_run_does_nothing(
    base_image: str,
) -> None:
    first = _invoke("docker.engine", "--start")
    assert first.returncode == 0, first.stderr
    pid_before = docker_engine.PIDFILE.read_text() if docker_engine.PIDFILE.exists() else ""
    again = _invoke("docker.engine", "--start")
    assert again.returncode == 0, again.stderr
    assert "answers" in again.stdout
    assert "dockerd --host" not in again.stderr, "an answering engine must be left alone"
    pid_after = docker_engine.PIDFILE.read_text() if docker_engine.PIDFILE.exists() else ""
    assert pid_before == pid_after

    began = time.monotonic()
    second = _invoke("docker.base-image")
    seconds = time.monotonic() - began
    print(f"\nsecond `invoke docker.base-image`: {seconds:.1f} s -> {second.stdout.strip()}")
    assert second.returncode == 0, second.stderr
    assert f"{base_image}: cached" in second.stdout
    assert "debootstrap" not in second.stderr
    assert "docker import" not in second.stderr
    # The image, labelled with the recipe, is the cache a second run relies on. Not the rootfs
    # tarball: that exists only where this cache built it, and an engine that kept the image
    # while the cache was emptied needs none (a cold CI run met exactly that).
    assert base_image_is_current(base_image)


def base_image_is_current(tag: str) -> bool:
    return base_image.is_current(tag, base_image.Recipe())


def test_engine_report_fails_with_the_fix_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = _invoke("docker.engine")
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stdout
    assert "docker.engine --start" in result.stderr
    started = _invoke("docker.engine", "--start")
    assert started.returncode == 1
    assert "DOCKER_HOST=unix:///nonexistent/docker.sock does not answer" in started.stderr


def test_starting_the_engine_without_root_names_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(
        docker_engine, "status", lambda timeout=5: docker_engine.EngineStatus(False, detail="x")
    )
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Exit, match=r"needs root; run `sudo uv run invoke docker.engine --start`"):
        docker_engine.ensure_running(Runner(echo=False))


def test_recipe_key_changes_with_the_recipe() -> None:
    recipe = base_image.Recipe()
    assert recipe.key == base_image.Recipe().key
    assert base_image.Recipe(packages=(*recipe.packages, "curl")).key != recipe.key


def test_wheel_platforms_and_markers() -> None:
    arm = build_context.pip_platform_args("linux/arm64")
    assert "manylinux_2_17_aarch64" in arm
    assert "manylinux2014_aarch64" in arm
    assert not [a for a in arm if "x86_64" in a]
    with pytest.raises(Exit, match="unsupported platform 'linux/s390x'"):
        build_context.pip_platform_args("linux/s390x")
    env = build_context.target_environment("linux/amd64")
    assert env["python_version"] == build_context.image_python() == "3.11"


def test_pinned_requirements_follow_the_target_markers(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:aa\n"
        "numpy==2.4.6 ; python_full_version < '3.12' \\\n    --hash=sha256:bb\n"
        "numpy==2.5.5 ; python_full_version >= '3.12' \\\n    --hash=sha256:cc\n"
        "Typing_Extensions==4.16.0 \\\n    --hash=sha256:dd\n"
    )
    assert build_context._pinned(requirements.read_text(), "linux/amd64") == {
        "numpy": "2.4.6",
        "typing-extensions": "4.16.0",
    }


def test_a_wheel_built_here_is_pinned_by_its_own_hash(tmp_path: Path) -> None:
    """The staged requirements pin a source-built package to the wheel built here (by its own
    sha256: the image's `pip install --require-hashes` checks it) and leave the rest as locked."""
    requirements = tmp_path / "requirements.txt"
    locked = (
        "numpy==2.4.6 ; python_full_version < '3.12' \\\n    --hash=sha256:bb\n"
        "numpy==2.5.5 ; python_full_version >= '3.12' \\\n    --hash=sha256:cc\n"
        "redis==5.2.1 \\\n    --hash=sha256:dd \\\n    --hash=sha256:ee\n"
    )
    requirements.write_text(locked)
    build_context.pin_to_wheels(requirements, {})
    assert requirements.read_text() == locked
    wheel = tmp_path / "numpy-2.4.6-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"built here")
    build_context.pin_to_wheels(requirements, {"numpy": wheel}, drop=frozenset({"redis"}))
    digest = hashlib.sha256(b"built here").hexdigest()
    assert requirements.read_text().splitlines() == [f"numpy==2.4.6 --hash=sha256:{digest}"]
    assert build_context._pinned(requirements.read_text(), "linux/amd64") == {"numpy": "2.4.6"}


def test_a_source_build_for_another_platform_takes_pypis_wheel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    native = build_context.native_platform()
    assert native in build_context.PLATFORMS, os.uname().machine
    (other,) = set(build_context.PLATFORMS) - {native}
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.4.6 --hash=sha256:bb\n")
    built = build_context.build_from_source(
        Runner(echo=False), requirements, other, build_context.NUMPY_WITHOUT_BLAS
    )
    assert built is None
    assert f"numpy: PyPI's wheel for {other}" in capsys.readouterr().err


def test_a_sdist_that_does_not_match_the_lock_is_refused(tmp_path: Path) -> None:
    """The sdist a source build starts from is checked against uv.lock's hash before anything
    builds it: a tampered or substituted archive is refused and not kept. Served for real on
    127.0.0.1."""
    (tmp_path / "numpy-2.4.6.tar.gz").write_bytes(b"not the locked archive")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/numpy-2.4.6.tar.gz"
    dest = tmp_path / "downloaded.tar.gz"
    try:
        good = "sha256:" + hashlib.sha256(b"not the locked archive").hexdigest()
        build_context.download_checked(url, good, dest)
        assert dest.read_bytes() == b"not the locked archive"
        locked = "sha256:" + "0" * 64
        with pytest.raises(Exit, match=r"does not match uv\.lock's hash .*refusing to build it"):
            build_context.download_checked(url, locked, dest)
        assert not dest.exists()
        with pytest.raises(Exit, match=r"cannot download .*404.*check network access"):
            build_context.download_checked(f"{url}.missing", locked, dest)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_locked_sdist_is_the_one_uv_lock_names() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (version,) = [p["version"] for p in lock["package"] if p["name"] == "psycopg-c"]
    url, digest = build_context.locked_sdist("psycopg-c", version)
    assert url.endswith(f"/psycopg_c-{version}.tar.gz"), url
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    with pytest.raises(Exit, match=r"uv\.lock has no source distribution of numpy 0\.0\.1"):
        build_context.locked_sdist("numpy", "0.0.1")


def test_service_build_dry_run_builds_numpy_and_psycopg_c(
    capsys: pytest.CaptureFixture[str], no_engine: None
) -> None:
    docker_tasks.build(_context(image_tag="dry"), image="service", dry_run=True)
    out, err = capsys.readouterr()
    assert "[dry-run] build numpy from its locked sdist for linux/amd64\n" in out
    assert (
        "[dry-run] build psycopg-c from its locked sdist for linux/amd64 instead of psycopg-binary"
    ) in out
    export = next(ln for ln in err.splitlines() if "uv export --frozen" in ln)
    assert "--extra=libpq" in export


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Docker engine answers: a dry run must print its commands without one."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def test_docker_build_dry_run_prints_the_buildkit_command_and_builds_nothing(
    capsys: pytest.CaptureFixture[str], no_engine: None
) -> None:
    docker_tasks.build(_context(image_tag="dry"), image="cli", dry_run=True)
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if " docker build " in ln)
    assert re.search(r"--network host --progress plain --file \S+/Dockerfile\.cli", line)
    assert "--build-arg VERSION=" + project.version() in line
    assert f"--tag {project.CLI_IMAGE}:dry" in line
    assert "uv export --frozen" in err
    assert "no Docker engine answers" in err


def test_a_real_build_without_an_engine_names_the_fix(no_engine: None) -> None:
    with pytest.raises(Exit, match=r"no Docker engine answers .*invoke docker\.engine --start"):
        base_image.ensure(Runner(echo=False))


def test_build_rejects_an_unknown_image() -> None:
    with pytest.raises(Exit, match=r"unknown image 'web'; choose one of: service, cli, all"):
        docker_tasks.build(_context(), image="web", dry_run=True)


def test_push_needs_a_registry_and_pushes_the_configured_reference(
    capsys: pytest.CaptureFixture[str], no_engine: None
) -> None:
    with pytest.raises(Exit, match="no registry configured"):
        docker_tasks.push(_context(), image="service", dry_run=True)
    docker_tasks.push(_context(registry="registry.example.com/team"), image="all", dry_run=True)
    err = capsys.readouterr().err
    version = project.version()
    assert f"docker push registry.example.com/team/{project.SERVICE_IMAGE}:{version}" in err
    assert f"docker push registry.example.com/team/{project.CLI_IMAGE}:{version}" in err


def test_run_is_hardened() -> None:
    argv = commands.hardened_run_argv("img:1", ["serve"], ports={8080: 8080})
    joined = " ".join(argv)
    for flag in (
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--user 1000:1000",
    ):
        assert flag in joined
    assert "--publish 127.0.0.1:8080:8080" in joined
    assert argv[-2:] == ["img:1", "serve"]


def test_compose_up_dry_run_and_bad_environment(
    capsys: pytest.CaptureFixture[str], no_engine: None
) -> None:
    compose_tasks.up(
        _context(image_tag="dry"), env="prod", wait=True, services="optimizer", dry_run=True
    )
    err = capsys.readouterr().err
    up = next(ln for ln in err.splitlines() if "docker compose" in ln)
    assert "--file" in up
    assert up.index("compose.yml") < up.index("compose.prod.yml")
    assert "up --detach --remove-orphans --wait" in up
    assert up.rstrip().endswith("optimizer")
    with pytest.raises(Exit, match="unknown environment 'staging'"):
        compose_tasks.up(_context(), env="staging", dry_run=True)


def test_deploy_target_compose_goes_through_the_dispatcher(no_engine: None) -> None:
    result = _invoke("deploy", "--target", "compose", "--dry-run")
    output = result.stdout + result.stderr
    assert "docker compose" in output, output
    assert "up --detach --remove-orphans --wait" in output
