"""The service accepts what the chart gives it: its own `config validate` on the rendered config.

Each scenario's ConfigMap becomes the environment and its secret files (the chart's Secret, or
what the operator puts in an existing Secret) are written where the *_FILE settings point, then
the real `llm-optimizer-service config validate` judges them, production checks included (the
secret files get the chart's own mode, which the keys-file check judges too). The migrations
Job's shell script runs too, with the real `db upgrade`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.k8s import helm, kube
from tests._support.helm import (
    Helm,
    Objects,
    materialise_env,
    one,
    pod_specs,
    secret_file_mode,
    service_command,
)
from tests._support.tools import free_port


def _validate(env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(home), **env}
    return subprocess.run(
        [str(service_command()), "config", "validate"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("scenario", "database"),
    [
        ("minimal", "external"),
        ("production", "external"),
        ("monitoring", "external"),
        ("in-chart-databases", "external"),
    ],
)
def test_the_service_accepts_the_rendered_settings(
    rendered: dict[str, Objects], scenario: str, database: str, tmp_path: Path
) -> None:
    env = materialise_env(rendered[scenario], tmp_path)
    result = _validate(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    environment = env["LLM_OPTIMIZER_ENVIRONMENT"]
    assert f"settings OK (environment={environment}, api keys=1" in result.stdout
    assert f"database={database}" in result.stdout


def test_defaults_fail_as_the_notes_warn(rendered: dict[str, Objects], tmp_path: Path) -> None:
    """No API keys configured: production refuses, naming the setting (NOTES.txt says so)."""
    result = _validate(materialise_env(rendered["default"], tmp_path), tmp_path)
    assert result.returncode != 0
    assert "LLM_OPTIMIZER_AUTH__API_KEYS_FILE" in result.stdout + result.stderr


def _migrations(helm_cli: Helm, database_url: str, root: Path) -> subprocess.CompletedProcess[str]:
    """Run the migrations Job's own command (its shell script) with the real service CLI."""
    values = helm.Values(
        sets={
            "database.url": database_url,
            "auth.apiKeys[0]": "migrations-test-key",
            "migrations.waitForDatabaseSeconds": "2",
        }
    )
    objects = helm_cli.render(values)
    job = one(objects, "Job", "-migrations")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = materialise_env(objects, root, kind="Job", container="migrations")
    path = f"{service_command().parent}:/usr/bin:/bin"
    return subprocess.run(
        container["command"],
        capture_output=True,
        text=True,
        env={"PATH": path, "HOME": str(root), **env},
        timeout=180,
    )


def test_migrations_job_command_upgrades_the_database(helm_cli: Helm, tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    result = _migrations(helm_cli, f"sqlite:///{database}", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert database.is_file()


def test_migrations_job_fails_loudly_when_the_database_never_answers(
    helm_cli: Helm, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg://llm:op-9d1e7b2c@127.0.0.1:{free_port()}/llm"
    result = _migrations(helm_cli, url, tmp_path)
    assert result.returncode == 1
    assert "db upgrade: database error" in result.stderr  # the service's own reason first
    assert "FATAL: database migrations failed for 2s" in result.stderr


def _secret_volumes(objects: Objects) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind/name, pod spec, volume) of every projected Secret volume of every workload."""
    return [
        (name, pod, volume)
        for name, pod in pod_specs(objects)
        for volume in pod.get("volumes", [])
        if "projected" in volume
    ]


def _assert_keys_file_readable_by_the_pod_only(objects: Objects) -> list[str]:
    checked = []
    for name, pod, volume in _secret_volumes(objects):
        mode = secret_file_mode(volume)
        assert not mode & 0o006, f"{name}: secret files mode {mode:04o} is world-readable"
        assert mode & 0o040, f"{name}: secret files mode {mode:04o} unreadable by the fsGroup"
        assert pod["securityContext"]["fsGroup"], f"{name}: no fsGroup owns the secret files"
        checked.append(name)
    return checked


@pytest.mark.parametrize("scenario", ["minimal", "production", "monitoring"])
def test_the_keys_file_is_not_world_readable(rendered: dict[str, Objects], scenario: str) -> None:
    """Production refuses an API keys file every user may read (mode & 0o006): the chart's
    secret volume gives its files 0440, group-owned by the pod's fsGroup. (The scenarios above
    run `config validate` on files written with this mode, so the service accepts it.)"""
    checked = _assert_keys_file_readable_by_the_pod_only(rendered[scenario])
    assert any(name.startswith("Deployment/") for name in checked)


def test_the_plain_manifests_keys_file_is_not_world_readable() -> None:
    objects = [
        doc
        for path in sorted(kube.RENDERED_DIR.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    checked = _assert_keys_file_readable_by_the_pod_only(objects)
    assert {name.split("/")[0] for name in checked} == {"Deployment", "Job"}
