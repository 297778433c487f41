"""The GitHub workflows: linted, scanned, pinned, least-privilege, and calling only real entries."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.core import project, tools
from ops.release import sign
from tests._support.entrypoints import invoke_tasks, nox_sessions
from tests._support.tools import require_tool

WORKFLOWS = sorted((project.ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
NOX_CALL = re.compile(r"\bnox\s+-s\s+(\"[^\"]+\"|'[^']+'|\S+)")
INVOKE_CALL = re.compile(r"\binvoke\s+([a-z][\w.-]*)")


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec["steps"]]


def test_both_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml"}


def test_actionlint_passes() -> None:
    actionlint = require_tool("actionlint")
    shellcheck = require_tool("shellcheck")  # actionlint lints every run: script with it
    env = {**os.environ, "PATH": f"{shellcheck.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(actionlint), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_github_actions_has_no_failed_or_skipped_check() -> None:
    checkov = require_tool("checkov")
    result = subprocess.run(
        [str(checkov), "--skip-download", "--quiet", "--compact", "--output", "json",
         "--framework", "github_actions", "--directory", str(WORKFLOWS[0].parent)],
        capture_output=True, text=True, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0, result.stdout
    assert summary["skipped"] == 0
    assert summary["passed"] > 50


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    for job, step in steps(load(path)):
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{path.name}:{job}: {step['uses']} is not a sha"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_concurrency(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {"contents": "read"}
    assert "group" in workflow["concurrency"]
    for job, spec in workflow["jobs"].items():
        assert "timeout-minutes" in spec, f"{job} has no timeout"
        for scope, level in spec.get("permissions", {}).items():
            assert level in ("read", "write", "none"), f"{job}: {scope}: {level}"
    for job, step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, job


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_project_code_runs_only_through_nox_sessions_or_invoke_tasks(path: Path) -> None:
    sessions, task_names = nox_sessions(), set(invoke_tasks())
    for job, step in steps(load(path)):
        script = step.get("run", "")
        if not script:
            continue
        for match in re.finditer(r"\buv run\s+(\S+)", script):
            assert match.group(1) in ("nox", "invoke"), f"{job}: `uv run {match.group(1)}`"
        for match in NOX_CALL.finditer(script):
            session = shlex.split(match.group(1))[0].split("(", 1)[0]
            assert session in sessions, f"{job}: nox session {session!r} does not exist"
        for match in INVOKE_CALL.finditer(script):
            assert match.group(1) in task_names, f"{job}: invoke {match.group(1)!r} does not exist"
        assert not re.search(r"\b(python3?|pytest|pip)\b", script), f"{job} bypasses nox/invoke"


def test_ci_jobs_and_python_matrix_follow_pyproject() -> None:
    ci = load(project.ROOT / ".github" / "workflows" / "ci.yml")
    assert {"lint", "typecheck", "tests", "infra", "images", "build"} <= set(ci["jobs"])
    assert {"audit", "coverage", "bench"} <= set(ci["jobs"])
    assert [entry["cron"] for entry in ci[True]["schedule"]]  # nightly (YAML 1.1: on -> True)
    coverage_steps = " ".join(step.get("run", "") for step in ci["jobs"]["coverage"]["steps"])
    assert re.search(r"invoke test\.coverage --fail-under [1-9]\d", coverage_steps)
    bench = ci["jobs"]["bench"]["steps"]
    assert any("nox -s bench" in step.get("run", "") for step in bench)
    assert any(step.get("uses", "").startswith("actions/upload-artifact@") for step in bench)
    matrix = ci["jobs"]["tests"]["strategy"]["matrix"]
    classifiers = load_classifier_versions()
    assert matrix["python"] == classifiers
    assert any(item["os"].startswith("macos") for item in matrix["include"])


def load_classifier_versions() -> list[str]:
    import tomllib

    meta = tomllib.loads((project.ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: "
    return [c.removeprefix(prefix) for c in meta["classifiers"] if re.match(rf"{prefix}3\.\d+$", c)]


def test_release_workflow_builds_every_platform_of_the_build_session() -> None:
    from ops.build import artifacts

    release = load(project.ROOT / ".github" / "workflows" / "release.yml")
    platforms = release["jobs"]["build"]["strategy"]["matrix"]["platform"]
    assert platforms == ["packages", *artifacts.PLATFORMS, artifacts.UNIVERSAL]
    assert release[True] == {"push": {"tags": ["v*"]}}  # YAML 1.1 reads the key `on` as True
    assert tools.CATALOGUE["pex"]  # the build job installs it with invoke setup --only pex


def test_release_workflow_signs_keyless_and_verifies_the_signatures() -> None:
    """Images and chart are signed by digest with the workflow's OIDC identity (no key in the
    workflow), then release.verify checks them in the registry against that identity."""
    path = project.ROOT / ".github" / "workflows" / "release.yml"
    release = load(path)
    assert "COSIGN_KEY" not in path.read_text()  # keyless: nothing to leak
    scripts = {
        job: " ".join(step.get("run", "") for step in spec["steps"])
        for job, spec in release["jobs"].items()
    }
    for job in ("images", "publish"):
        assert release["jobs"][job]["permissions"]["id-token"] == "write", job
        assert re.search(r"invoke setup (--only \S+ )*--only cosign", scripts[job]), job
    assert scripts["images"].index("imagetools create") < scripts["images"].index(
        "invoke release.sign"
    )
    assert '--ref "$REGISTRY/$image@$digest"' in scripts["images"]  # by digest, never a tag
    assert 'invoke release.sign --version "$version"' in scripts["images"]
    assert "invoke release.publish" in scripts["publish"]  # pushes and signs the chart
    verify_step = next(
        step
        for step in release["jobs"]["publish"]["steps"]
        if "release.verify" in step.get("run", "") and "--registry" in step["run"]
    )
    assert "--certificate-identity" in verify_step["run"]
    assert verify_step["env"]["IDENTITY"] == "https://github.com/${{ github.workflow_ref }}"
    assert verify_step["env"]["ISSUER"] == sign.GITHUB_ISSUER
    publish_steps = [s.get("run", "") for s in release["jobs"]["publish"]["steps"]]
    assert publish_steps.index(verify_step["run"]) > next(
        i for i, run in enumerate(publish_steps) if "invoke release.publish" in run
    )
