"""The service accepts what the chart gives it: its own `config validate` on the rendered config.

Each scenario's ConfigMap becomes the environment and its secret files (the chart's Secret, or
what the operator puts in an existing Secret) are written where the *_FILE settings point, then
the real `llm-optimizer-service config validate` judges them, production checks included.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops import project
from tests._support.helm import Objects, of_kind

# What an operator stores in an existing Secret (docs/kubernetes.md, infra/kubernetes/values.yaml).
OPERATOR_SECRET = {
    "api-keys": "operator-key-1 read,write\n",
    "database-url": "postgresql+psycopg://llm:op-9d1e7b2c@db.example.internal:5432/llm",
    "redis-url": "redis://:op-4a8c6e1f@redis.example.internal:6379/0",
}


def _service_command() -> Path:
    command = Path(sys.executable).parent / project.SERVICE_COMMAND
    assert command.is_file(), f"{command} missing: uv sync --group test installs the service"
    return command


def _materialise(objects: Objects, root: Path) -> dict[str, str]:
    """The service container's environment, with its volumes under ``root``."""
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == project.CHART_NAME)
    config_maps = {c["metadata"]["name"]: c["data"] for c in of_kind(objects, "ConfigMap")}
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in of_kind(objects, "Secret")
    }
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    env: dict[str, str] = {}
    for source in server["envFrom"]:
        env.update(config_maps[source["configMapRef"]["name"]])
    for volume in pod["volumes"]:
        target = root / volume["name"]
        target.mkdir()
        for source in volume.get("projected", {}).get("sources", []):
            data: dict[str, Any] = secrets.get(source["secret"]["name"], OPERATOR_SECRET)
            for item in source["secret"]["items"]:
                (target / item["path"]).write_text(data[item["key"]])
        # point every path setting at the materialised volume
        for key, value in env.items():
            if value == mounts[volume["name"]] or value.startswith(mounts[volume["name"]] + "/"):
                env[key] = str(target) + value[len(mounts[volume["name"]]) :]
    return env


def _validate(env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(home), **env}
    return subprocess.run(
        [str(_service_command()), "config", "validate"],
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
    env = _materialise(rendered[scenario], tmp_path)
    result = _validate(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    environment = env["LLM_OPTIMIZER_ENVIRONMENT"]
    assert f"settings OK (environment={environment}, api keys=1" in result.stdout
    assert f"database={database}" in result.stdout


def test_defaults_fail_as_the_notes_warn(rendered: dict[str, Objects], tmp_path: Path) -> None:
    """No API keys configured: production refuses, naming the setting (NOTES.txt says so)."""
    result = _validate(_materialise(rendered["default"], tmp_path), tmp_path)
    assert result.returncode != 0
    assert "LLM_OPTIMIZER_AUTH__API_KEYS_FILE" in result.stdout + result.stderr
