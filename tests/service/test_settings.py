"""Settings: env nesting, config file (YAML/TOML), *_FILE secrets, production refusals, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from llm_optimizer_service.cli import app
from llm_optimizer_service.settings import (
    SettingsError,
    env_var_names,
    load_settings,
    masked_dump,
    production_problems,
)
from typer.testing import CliRunner

CONTRACT_VARIABLES = {
    "LLM_OPTIMIZER_ENVIRONMENT",
    "LLM_OPTIMIZER_DATA_DIR",
    "LLM_OPTIMIZER_DATABASE__URL",
    "LLM_OPTIMIZER_REDIS__URL",
    "LLM_OPTIMIZER_KAFKA__BROKERS",
    "LLM_OPTIMIZER_SERVER__HOST",
    "LLM_OPTIMIZER_SERVER__HTTP_PORT",
    "LLM_OPTIMIZER_SERVER__GRPC_PORT",
    "LLM_OPTIMIZER_SERVER__METRICS_PORT",
    "LLM_OPTIMIZER_AUTH__API_KEYS_FILE",
    "LLM_OPTIMIZER_LOG__LEVEL",
    "LLM_OPTIMIZER_LOG__JSON",
    "LLM_OPTIMIZER_OTEL__ENDPOINT",
    "LLM_OPTIMIZER_CONFIG",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LLM_OPTIMIZER_"):
            monkeypatch.delenv(name)


def test_defaults_run_on_a_laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_OPTIMIZER_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.environment == "development"
    assert settings.database_url == f"sqlite:///{tmp_path / 'llm-optimizer.db'}"
    assert (settings.server.http_port, settings.server.grpc_port, settings.server.metrics_port) == (
        8080,
        50051,
        9090,
    )
    assert settings.auto_migrate
    assert production_problems(settings) == []


def test_every_contract_variable_is_a_setting() -> None:
    names = env_var_names()
    assert names >= CONTRACT_VARIABLES
    assert "LLM_OPTIMIZER_DATABASE__URL_FILE" in names
    assert "LLM_OPTIMIZER_AUTH__API_KEYS_FILE" in names
    assert all(name.startswith("LLM_OPTIMIZER_") for name in names)


def test_env_nesting_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_OPTIMIZER_SERVER__HTTP_PORT", "18080")
    monkeypatch.setenv("LLM_OPTIMIZER_LOG__JSON", "true")
    monkeypatch.setenv("LLM_OPTIMIZER_LOG__LEVEL", "DEBUG")
    monkeypatch.setenv("LLM_OPTIMIZER_KAFKA__BROKERS", "a:9092,b:9092")
    settings = load_settings()
    assert settings.server.http_port == 18080
    assert settings.log.json_ is True
    assert settings.log.level == "DEBUG"
    assert settings.kafka.brokers == "a:9092,b:9092"
    monkeypatch.setenv("LLM_OPTIMIZER_SERVER__HTTP_PORT", "eighty")
    with pytest.raises(SettingsError, match="LLM_OPTIMIZER_SERVER__HTTP_PORT"):
        load_settings()


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_file_and_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    config = tmp_path / f"config{suffix}"
    if suffix == ".yaml":
        config.write_text("server:\n  http_port: 1111\n  grpc_port: 2222\nlog:\n  level: WARNING\n")
    else:
        config.write_text(
            '[server]\nhttp_port = 1111\ngrpc_port = 2222\n[log]\nlevel = "WARNING"\n'
        )
    monkeypatch.setenv("LLM_OPTIMIZER_CONFIG", str(config))
    monkeypatch.setenv("LLM_OPTIMIZER_SERVER__HTTP_PORT", "3333")
    settings = load_settings()
    assert settings.server.http_port == 3333  # env wins
    assert settings.server.grpc_port == 2222  # from the file
    assert settings.log.level == "WARNING"


def test_config_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_OPTIMIZER_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match="cannot read the config file"):
        load_settings()
    bad = tmp_path / "bad.yaml"
    bad.write_text("sever:\n  http_port: 1\n")
    monkeypatch.setenv("LLM_OPTIMIZER_CONFIG", str(bad))
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings()
    typo = tmp_path / "typo.yaml"
    typo.write_text("server:\n  http_prot: 1\n")
    monkeypatch.setenv("LLM_OPTIMIZER_CONFIG", str(typo))
    with pytest.raises(SettingsError, match=r"server\.http_prot"):
        load_settings()


def test_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "db-url"
    secret.write_text("postgresql+psycopg://app:s3cr3t-value@db/app\n")
    monkeypatch.setenv("LLM_OPTIMIZER_DATABASE__URL_FILE", str(secret))
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://app:s3cr3t-value@db/app"
    dumped = json.dumps(masked_dump(settings))
    assert "s3cr3t-value" not in dumped
    monkeypatch.setenv("LLM_OPTIMIZER_DATABASE__URL_FILE", str(tmp_path / "nope"))
    with pytest.raises(SettingsError, match="LLM_OPTIMIZER_DATABASE__URL_FILE"):
        load_settings()


def test_production_refusals(tmp_path: Path) -> None:
    problems = production_problems(load_settings(environment="production"))
    assert any("LLM_OPTIMIZER_AUTH__API_KEYS_FILE" in p for p in problems)
    keys = tmp_path / "keys"
    keys.write_text("a-key\n")
    settings = load_settings(
        environment="production",
        auth={"api_keys_file": keys},
        database={"url": "postgresql+psycopg://app:changeme@db/app"},
    )
    problems = production_problems(settings)
    assert len(problems) == 1
    assert "LLM_OPTIMIZER_DATABASE__URL" in problems[0]
    good = load_settings(
        environment="production",
        auth={"api_keys_file": keys},
        database={"url": "postgresql+psycopg://app:Xy7-long-random@db/app"},
    )
    assert production_problems(good) == []
    assert not good.auto_migrate


def test_config_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {
        "LLM_OPTIMIZER_DATA_DIR": str(tmp_path),
        "LLM_OPTIMIZER_REDIS__URL": "redis://:hunter2-secret@cache:6379/0",
    }
    shown = runner.invoke(app, ["config", "show"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "hunter2-secret" not in shown.output
    assert yaml.safe_load(shown.stdout)["redis"]["url"] == "***"
    as_json = runner.invoke(app, ["config", "show", "-o", "json"], env=env)
    assert json.loads(as_json.stdout)["server"]["http_port"] == 8080
    assert runner.invoke(app, ["config", "validate"], env=env).exit_code == 0
    typo = runner.invoke(app, ["config", "validate"], env={**env, "LLM_OPTIMIZER_ENVIROMENT": "x"})
    assert typo.exit_code == 0
    assert "LLM_OPTIMIZER_ENVIROMENT is not a setting" in typo.stderr

    bad = runner.invoke(
        app, ["config", "validate"], env={**env, "LLM_OPTIMIZER_SERVER__GRPC_PORT": "x"}
    )
    assert bad.exit_code != 0
    assert "LLM_OPTIMIZER_SERVER__GRPC_PORT" in bad.stderr
    prod = runner.invoke(
        app, ["config", "validate"], env={**env, "LLM_OPTIMIZER_ENVIRONMENT": "production"}
    )
    assert prod.exit_code != 0
    assert "LLM_OPTIMIZER_AUTH__API_KEYS_FILE" in prod.stderr
    serve = runner.invoke(app, ["serve"], env={**env, "LLM_OPTIMIZER_ENVIRONMENT": "production"})
    assert serve.exit_code != 0
    assert "production refuses to start" in serve.stderr


def test_version_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["version", "--json"],
        env={
            "LLM_OPTIMIZER_GIT_SHA": "abc1234",
            "LLM_OPTIMIZER_BUILD_DATE": "2026-11-26T00:00:00Z",
        },
    )
    data = json.loads(result.stdout)
    assert data["git_sha"] == "abc1234"
    assert data["build_date"] == "2026-11-26T00:00:00Z"
    assert data["version"]
