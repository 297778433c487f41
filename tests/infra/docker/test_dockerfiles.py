"""Static checks of the Dockerfiles and scripts: hadolint, checkov, shellcheck and the facts the
issue asks for (pinned base, non-root, tini, HEALTHCHECK, ports, labels, no CA or secret)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ops.core import project
from ops.docker import base_image
from ops.docker.build_context import IMAGES
from tests._support.tools import require_tool

DOCKER_DIR = project.INFRA_DIR / "docker"
OUR_DOCKERFILES = [spec.dockerfile for spec in IMAGES.values()]
STANDIN_DOCKERFILES = sorted((DOCKER_DIR / "standins").glob("*/Dockerfile"))
ALL_DOCKERFILES = [*OUR_DOCKERFILES, *STANDIN_DOCKERFILES]
SCRIPTS = [DOCKER_DIR / "init-db.sh", *sorted((DOCKER_DIR / "standins").glob("*/*.sh"))]


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _runtime_stage(dockerfile: Path) -> list[tuple[str, str]]:
    instructions = _instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_hadolint_is_clean_on_every_dockerfile() -> None:
    hadolint = require_tool("hadolint")
    result = _run([str(hadolint), *map(str, ALL_DOCKERFILES)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_checkov_dockerfile_framework_passes_and_every_skip_has_a_reason() -> None:
    checkov = require_tool("checkov")
    result = _run(
        [
            str(checkov),
            "--skip-download",
            "--framework",
            "dockerfile",
            "--compact",
            "--quiet",
            *(arg for path in ALL_DOCKERFILES for arg in ("-f", str(path))),
        ],
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout, result.stdout
    for path in ALL_DOCKERFILES:
        for skip in re.findall(r"#\s*checkov:skip=(\S+)", path.read_text()):
            check, _, _reason = skip.partition(":")
            line = next(ln for ln in path.read_text().splitlines() if f"checkov:skip={skip}" in ln)
            assert len(line.split(":", 2)[-1].strip()) > 20, f"{path}: skip {check} needs a reason"


def test_shellcheck_is_clean_on_the_scripts() -> None:
    shellcheck = require_tool("shellcheck")
    result = _run([str(shellcheck), *map(str, SCRIPTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script} must be executable"
        assert "set -Eeuo pipefail" in script.read_text(), script


def test_every_dockerfile_defaults_to_the_same_pinned_base_image() -> None:
    defaults = {path: base_image.default_tag(path) for path in ALL_DOCKERFILES}
    assert len(set(defaults.values())) == 1, defaults
    tag = next(iter(defaults.values()))
    name, _, version = tag.partition(":")
    assert name, tag
    assert version not in ("", "latest"), tag
    assert re.match(r"^\d+\.\d+\.\d+-", version), f"pin the patch version, not just {version}"


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_no_syntax_directive_no_secret_no_ca_copied(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    # A `# syntax=` line makes BuildKit pull a frontend image: impossible without a registry.
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    for word, args in _instructions(dockerfile):
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem|key)\b|ca-certificates", args), args
        assert "type=secret" not in args, "no secret is needed: wheels are built on the host"
        assert "--trusted-host" not in args
        assert "--cert" not in args


@pytest.mark.parametrize("dockerfile", OUR_DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_is_non_root_multi_stage_and_labelled(dockerfile: Path) -> None:
    stages = [args for word, args in _instructions(dockerfile) if word == "FROM"]
    assert len(stages) >= 3, "multi-stage: dependencies, app and runtime"
    runtime = _runtime_stage(dockerfile)
    assert ("USER", f"{project.IMAGE_UID}:{project.IMAGE_UID}") in runtime
    labels = " ".join(args for word, args in runtime if word == "LABEL")
    for key in ("version", "revision", "created", "title", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert "${VERSION}" in labels
    assert "${GIT_SHA}" in labels
    copies = [args for word, args in runtime if word == "COPY"]
    assert all(args.startswith("--from=") for args in copies), "runtime copies only from stages"


def test_service_runtime_has_tini_healthcheck_ports_and_command() -> None:
    runtime = _runtime_stage(IMAGES["service"].dockerfile)
    entrypoint = next(args for word, args in runtime if word == "ENTRYPOINT")
    assert entrypoint == f'["tini", "--", "{project.SERVICE_COMMAND}"]'
    assert ("CMD", '["serve"]') in runtime
    health = next(args for word, args in runtime if word == "HEALTHCHECK")
    # the service's own liveness check, on the port its settings say (proven in test_images)
    assert f'CMD ["{project.SERVICE_COMMAND}", "health", "--live"' in health
    assert "curl" not in health
    exposed = {int(p) for word, args in runtime if word == "EXPOSE" for p in args.split()}
    assert exposed == {project.HTTP_PORT, project.GRPC_PORT, project.METRICS_PORT}


def test_service_image_environment_names_real_settings() -> None:
    from llm_optimizer_service import settings

    runtime = _runtime_stage(IMAGES["service"].dockerfile)
    env_text = " ".join(args for word, args in runtime if word == "ENV")
    names = set(re.findall(r"\b(LLM_OPTIMIZER_[A-Z0-9_]+)=", env_text))
    assert names, "the image sets the data dir and bind address"
    assert names <= settings.env_var_names(), names - settings.env_var_names()


def test_dockerignore_admits_only_the_staged_inputs() -> None:
    lines = [
        ln.strip()
        for ln in (project.ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "deny everything first"
    assert "!build/docker/" in lines
    assert not [ln for ln in lines if ln.startswith("!") and ln != "!build/docker/"]
