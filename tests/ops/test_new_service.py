"""`invoke new-service`: validation before anything is written, rendering, discovery, rollback.

The slow end-to-end proof (a rendered service passing lint, typecheck, tests and becoming a
healthy container) is test_new_service_proof.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from invoke.exceptions import Exit

from ops.core import workspace as services
from ops.core.project import GRPC_PORT, HTTP_PORT, METRICS_PORT, ROOT, version
from ops.core.runner import Runner
from ops.docker import base_image
from ops.docker.build_context import IMAGES
from ops.k8s import helm
from ops.scaffold import new_service
from tests._support.helm import Helm, one
from tests._support.tools import require_tool

WORKSPACE_FILES = ("pyproject.toml", "uv.lock")


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (minus caches) → its sha256: the 'nothing written' witness."""
    skip = {".git", ".venv", ".nox", "build", "__pycache__", ".mypy_cache", ".ruff_cache"}
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith(".pytest")]
        for name in filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A repository root with the real workspace metadata and one generated service on 8081."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(ROOT / "uv.lock", tmp_path / "uv.lock")
    for pyproject in (ROOT / "services").glob("*/pyproject.toml"):
        target = tmp_path / pyproject.relative_to(ROOT)
        target.parent.mkdir(parents=True)
        shutil.copy(pyproject, target)
    existing = tmp_path / "services" / "ledger"
    existing.mkdir()
    (existing / "Dockerfile").write_text("FROM scratch\n")
    (existing / "pyproject.toml").write_text(
        '[project]\nname = "ledger"\nversion = "9.9.9"\n\n'
        '[tool.llm-optimizer.service]\nimage = "ledger"\nhttp_port = 8081\nmetrics_port = 9081\n'
    )
    return tmp_path


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Billing", "lowercase letters"),
        ("b", "2-40 characters"),
        ("x" * 41, "2-40 characters"),
        ("1billing", "starting with a letter"),
        ("billing--api", "single hyphens"),
        ("billing-", "single hyphens"),
        ("billing_api", "single hyphens"),
        ("../escape", "lowercase letters"),
        ("cli", "reserved by the tooling"),
        ("all", "reserved by the tooling"),
        ("llm-optimizer-cli", "a workspace package has it already"),
        ("ledger", "a workspace package has it already"),
        ("json", "would shadow an existing Python module"),
        ("fastapi", "would shadow an existing Python module"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(
    fake_root: Path, name: str, problem: str
) -> None:
    before = _tree(fake_root)
    with pytest.raises(Exit, match=problem) as raised:
        new_service.create(Runner(), name, root=fake_root)
    assert raised.value.code == 1
    assert _tree(fake_root) == before


def test_an_existing_directory_is_never_overwritten(fake_root: Path) -> None:
    (fake_root / "services" / "reports").mkdir()
    (fake_root / "services" / "reports" / "notes.txt").write_text("mine\n")
    before = _tree(fake_root)
    with pytest.raises(Exit, match=r"services/reports exists already; new-service never"):
        new_service.create(Runner(), "reports", root=fake_root)
    assert _tree(fake_root) == before


@pytest.mark.parametrize(
    ("port", "clash"),
    [
        (HTTP_PORT, f"HTTP port {HTTP_PORT} is already used by the optimizer's REST API"),
        (GRPC_PORT, f"HTTP port {GRPC_PORT} is already used by the optimizer's gRPC API"),
        (METRICS_PORT - 1000, f"metrics port {METRICS_PORT} is already used by the optimizer"),
        (8081, "HTTP port 8081 is already used by services/ledger (http_port)"),
        (8500, None),
    ],
)
def test_port_clashes_are_refused_and_nothing_is_written(
    fake_root: Path, port: int, clash: str | None
) -> None:
    if clash is None:  # 8500 is free, but its metrics port is the other service's
        (fake_root / "services" / "ledger" / "pyproject.toml").write_text(
            '[project]\nname = "ledger"\nversion = "9.9.9"\n\n[tool.llm-optimizer.service]\n'
            'image = "ledger"\nhttp_port = 8400\nmetrics_port = 9500\n'
        )
        clash = "metrics port 9500 is already used by services/ledger (metrics_port)"
    before = _tree(fake_root)
    with pytest.raises(Exit, match=re.escape(clash)):
        new_service.create(Runner(), "reports", port, root=fake_root)
    assert _tree(fake_root) == before


def test_out_of_range_port_is_refused(fake_root: Path) -> None:
    with pytest.raises(Exit, match="invalid port 80: use 1024-64535"):
        new_service.plan("reports", 80, root=fake_root)


def test_default_port_is_the_first_free_pair(fake_root: Path) -> None:
    chosen = new_service.plan("reports", root=fake_root)
    assert (chosen.http_port, chosen.metrics_port) == (8082, 9082)  # ledger holds 8081/9081
    assert (chosen.package, chosen.env_prefix) == ("reports", "REPORTS_")
    assert new_service.plan("billing-api", root=fake_root).env_prefix == "BILLING_API_"


def test_the_command_line_refuses_with_exit_1_and_writes_nothing() -> None:
    """Through the real `invoke` CLI, on the real repository: three refusals, and what
    new-service writes (services/, pyproject.toml, uv.lock) is unchanged."""

    def witness() -> dict[str, str]:
        return {
            **_tree(ROOT / "services"),
            **{f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest() for f in WORKSPACE_FILES},
        }

    before = witness()
    for args, message in [
        (["--name", "Bad_Name"], "invalid service name 'Bad_Name'"),
        (["--name", "optimizer"], "services/optimizer exists already"),
        (
            ["--name", "fresh-svc", "--port", str(HTTP_PORT)],
            f"port clash: the HTTP port {HTTP_PORT}",
        ),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "invoke", "new-service", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert message in result.stderr
    assert witness() == before


def test_render_fills_every_variable_and_discovery_sees_the_result(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    chosen = new_service.plan("billing-api", 8300, root=tmp_path)
    files = new_service.render(chosen)
    rel = {str(p.relative_to(chosen.target)) for p in files}
    assert {
        "Dockerfile",
        "README.md",
        "pyproject.toml",
        "src/billing_api/settings.py",
        "src/billing_api/cli.py",
        "tests/test_billing_api_app.py",
    } <= rel
    for path in files:
        text = path.read_text()
        assert "{{" not in text, path
        assert "cookiecutter" not in text, path
    pyproject = tomllib.loads((chosen.target / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"billing-api": "billing_api.cli:main"}
    settings = (chosen.target / "src/billing_api/settings.py").read_text()
    assert 'ENV_PREFIX = "BILLING_API_"' in settings
    assert "default=8300" in settings
    assert "default=9300" in settings
    dockerfile = chosen.target / "Dockerfile"
    assert base_image.default_tag(dockerfile) == base_image.default_tag()
    assert "build/docker/billing-api/wheels" in dockerfile.read_text()
    (found,) = services.discover(tmp_path / "services")
    assert (found.dist, found.image, found.http_port, found.metrics_port) == (
        "billing-api",
        "billing-api",
        8300,
        9300,
    )
    assert new_service.used_ports(tmp_path / "services")[9300] == (
        "services/billing-api (metrics_port)"
    )
    hadolint = require_tool("hadolint")
    lint = subprocess.run([hadolint, dockerfile], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_failed_registration_removes_what_was_written(fake_root: Path) -> None:
    (fake_root / "pyproject.toml").write_text("this is [not toml\n")  # `uv add` must fail
    before = _tree(fake_root)
    with pytest.raises(Exit, match="uv could not add services/reports to the workspace"):
        new_service.create(Runner(), "reports", root=fake_root)
    assert _tree(fake_root) == before


def test_the_repository_images_include_only_real_generated_services() -> None:
    generated = {s.directory.name for s in services.discover()}
    assert set(IMAGES) == {"service", "cli", *generated}
    for key in generated:
        assert IMAGES[key].dockerfile == ROOT / "services" / key / "Dockerfile"


def test_the_printed_chart_entry_renders_a_valid_hardened_deployment(
    fake_root: Path, tmp_path: Path
) -> None:
    chosen = new_service.plan("reports", root=fake_root)
    values = tmp_path / "extra.yaml"
    values.write_text(yaml.safe_dump({"extraServices": [new_service.chart_entry(chosen)]}))
    helm_cli = Helm(require_tool("helm"), tmp_path / "helm-home")
    objects = helm_cli.render(helm.Values(files=(values,)))
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.utils.latest_version(), strict=True)
    deployment = one(objects, "Deployment", "-reports")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"reports:{version()}"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": chosen.http_port,
        "metrics": chosen.metrics_port,
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    service = one(objects, "Service", "-reports")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert "helm.sh/chart" not in service["spec"]["selector"]
    # Without the value, the chart renders no extra workload.
    default = helm_cli.render(helm.Values())
    assert not [o for o in default if o["metadata"]["name"].endswith("-reports")]


def test_rendered_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    """The generated unit passes systemd-analyze verify and scores like the optimizer's."""
    analyze = require_tool("systemd-analyze")
    (tmp_path / "services").mkdir()
    chosen = new_service.plan("billing-api", 8300, root=tmp_path)
    new_service.render(chosen)
    unit = chosen.target / "deploy" / "billing-api.service"
    stand_in = tmp_path / "opt" / "venv" / "bin" / "billing-api"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    verifiable = tmp_path / "billing-api.service"
    verifiable.write_text(unit.read_text().replace("/opt/billing-api/", f"{tmp_path}/opt/"))
    assert "BILLING_API_ENVIRONMENT=production" in unit.read_text()
    verify = subprocess.run(
        [str(analyze), "verify", str(verifiable)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == ""
    security = subprocess.run(
        [str(analyze), "security", "--offline=true", "--threshold=20", "--no-pager",
         str(verifiable)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert security.returncode == 0, security.stdout + security.stderr
