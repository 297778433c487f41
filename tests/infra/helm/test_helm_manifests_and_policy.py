"""The committed plain manifests equal a fresh rendering; checkov finds nothing unexplained."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml
from invoke.context import Context

from ops.core import project, tools
from ops.core.runner import Runner
from ops.k8s import helm, kube
from tests._support.helm import SCENARIOS, Helm
from tests._support.tools import require_tool

CHECKOV_CONFIG = project.INFRA_DIR / "helm" / ".checkov.yaml"


def test_plain_manifests_equal_a_fresh_render(helm_cli: Helm) -> None:
    require_tool("helm")
    files = kube.render_manifests(Runner(ctx=Context(), echo=False))
    assert kube.manifest_drift(files) == [], "run: uv run invoke k8s.render"
    kinds = [o["kind"] for o in kube.objects()]
    assert kinds[0] == "Namespace"
    assert "Deployment" in kinds
    assert "Job" in kinds
    assert kinds.index("Job") < kinds.index("Deployment"), "migrations are applied first"
    assert "Pod" not in kinds, "no helm test pods in plain manifests"


def test_plain_manifests_need_operator_secrets_only() -> None:
    assert kube.required_secrets() == ["llm-optimizer-secrets"]
    assert not [o for o in kube.objects() if o["kind"] == "Secret"], "no secrets in the repo"


def test_skip_list_gives_a_reason_for_every_skip() -> None:
    text = CHECKOV_CONFIG.read_text()
    skips = yaml.safe_load(text)["skip-check"]
    assert skips
    lines = text.splitlines()
    for check in skips:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {check}")
        reason = lines[index - 1].strip()
        assert reason.startswith("#"), f"{check} has no reason above it"
        assert len(reason) > 20, f"{check} has no reason above it"
    for template in (helm.CHART_DIR / "templates").rglob("*.yaml"):
        for check, reason in re.findall(
            r"checkov\.io/skip\d+: (CKV\w+)=(.*)", template.read_text()
        ):
            assert len(reason.strip()) > 20, f"{template.name}: {check} has no reason"


def _json_documents(text: str) -> list[dict[str, Any]]:
    """checkov prints one JSON document per directory and framework, some as lists."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return found
        document, index = decoder.raw_decode(text, index)
        found += document if isinstance(document, list) else [document]


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory, helm_cli: Helm) -> dict[str, Any]:
    """checkov once over the chart (helm framework) and every rendering (kubernetes framework)."""
    binary = require_tool("checkov")
    workdir = tmp_path_factory.mktemp("checkov")
    renders = workdir / "rendered"
    renders.mkdir()
    for name in SCENARIOS:
        path = helm.scenarios()[name]
        values = helm.Values(files=(path,) if path else ())
        (renders / f"{name}.yaml").write_text(helm_cli.run(helm.template(values)).stdout)
    for manifest in kube.RENDERED_DIR.glob("*.yaml"):
        (renders / f"plain-{manifest.name}").write_text(manifest.read_text())
    env = {
        **helm_cli.env,
        "BC_SKIP_MAPPING": "TRUE",
        "PATH": tools.search_path(),
        "HOME": str(workdir),
    }
    # One checkov process for both frameworks: starting checkov costs most of its run time.
    result = subprocess.run(
        [
            str(binary),
            "--skip-download",
            "--quiet",
            "--compact",
            "--output=json",
            f"--config-file={CHECKOV_CONFIG}",
            "--framework",
            "helm",
            "kubernetes",
            f"--directory={helm.CHART_DIR}",
            f"--directory={renders}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports: dict[str, Any] = {}
    for report in _json_documents(result.stdout):
        merged = reports.setdefault(
            report["check_type"], {"failed": [], "passed": 0, "skipped": 0, "parsing_errors": 0}
        )
        merged["failed"] += report["results"].get("failed_checks", [])
        for key in ("passed", "skipped", "parsing_errors"):
            merged[key] += report["summary"][key]
    reports["exit"] = result.returncode
    return reports


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["helm", "kubernetes"])
def test_checkov_finds_no_unexplained_failure(checkov: dict[str, Any], framework: str) -> None:
    report = checkov[framework]
    assert report["passed"] > 100
    assert report["parsing_errors"] == 0
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
        for c in report["failed"]
    ]
    assert not failed, "\n".join(failed)
    assert checkov["exit"] == 0
    assert report["skipped"] > 0, "the skip list is in use"
