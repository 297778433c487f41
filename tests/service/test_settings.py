"""Settings: env nesting, config file (YAML/TOML), *_FILE secrets, production refusals, the CLI."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_optimizer_service.cli import app
from llm_optimizer_service.safety import is_weak, review
from llm_optimizer_service.settings import (
    SettingsError,
    env_var_names,
    load_settings,
    masked_dump,
)
from typer.testing import CliRunner

from ops.core import project
from tests._support.settings_review import production_problems

ROOT = Path(__file__).resolve().parents[2]
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
        project.HTTP_PORT,
        project.GRPC_PORT,
        project.METRICS_PORT,
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


STRONG_KEY = "k-" + "7f3a9c2e" * 5  # 42 characters, on no list
GOOD_URL = "postgresql+psycopg://app:Xy7-long-random@db/app"


def _production(tmp_path: Path, keys: str = STRONG_KEY, mode: int = 0o600, **extra: Any) -> Any:
    path = tmp_path / "keys"
    path.write_text(keys + "\n")
    path.chmod(mode)
    values: dict[str, Any] = {
        "environment": "production",
        "auth": {"api_keys_file": path},
        "database": {"url": GOOD_URL},
    }
    values.update(extra)
    return load_settings(**values)


def _sha(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


# (change to the good production settings, the setting the one problem must name, its words)
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "one-character key": ({"keys": "x"}, "keys line 1", "too short (1 of at least 32"),
    "31-character key": ({"keys": "k" * 31}, "keys line 1", "too short (31 of at least 32"),
    "changeme": ({"keys": "changeme"}, "keys line 1", "well-known example value"),
    "Change_Me spelled": ({"keys": "Change_Me read"}, "keys line 1", "well-known example"),
    "digest of changeme": ({"keys": _sha("changeme")}, "keys line 1", "sha256 digest"),
    "digest of Password": ({"keys": _sha("Password")}, "keys line 1", "sha256 digest"),
    "our compose default": ({"keys": "dev-key-change-me"}, "keys line 1", "well-known"),
    "world-readable file": ({"mode": 0o644}, "LLM_OPTIMIZER_AUTH__API_KEYS_FILE", "chmod 600"),
    "blank key list": (
        {"auth": {"api_keys": " , "}},
        "LLM_OPTIMIZER_AUTH__API_KEYS is set but holds no key",
        "authentication is off",
    ),
    "percent-encoded password": (
        {"database": {"url": "postgresql://u:chang%65me@h/db"}},
        "LLM_OPTIMIZER_DATABASE__URL",
        "well-known default",
    ),
    "capitalised password": (
        {"database": {"url": "postgresql://u:Changeme@h/db"}},
        "LLM_OPTIMIZER_DATABASE__URL",
        "well-known default",
    ),
    "password parameter": (
        {"database": {"url": "postgresql://u@h/db?password=postgres"}},
        "LLM_OPTIMIZER_DATABASE__URL",
        "well-known default",
    ),
    "redis password": (
        {"redis": {"url": "redis://:CHANGE-ME@cache:6379/0"}},
        "LLM_OPTIMIZER_REDIS__URL",
        "well-known default",
    ),
    "auto-migrate": (
        {"database": {"url": GOOD_URL, "auto_migrate": True}},
        "LLM_OPTIMIZER_DATABASE__AUTO_MIGRATE",
        "db upgrade",
    ),
}


def test_good_production_settings_pass(tmp_path: Path) -> None:
    assert production_problems(_production(tmp_path)) == []
    assert production_problems(_production(tmp_path, keys="k" * 32, mode=0o640)) == []
    assert production_problems(_production(tmp_path, keys=_sha("a-random-key"))) == []
    assert not _production(tmp_path).auto_migrate


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_production_refuses_each_weakness(tmp_path: Path, case: str) -> None:
    change, setting, words = REFUSED[case]
    settings = _production(tmp_path, **change)
    (problem,) = production_problems(settings)
    assert setting in problem
    assert words in problem
    # development starts, but the same finding is reported (as a warning)
    development = settings.model_copy(update={"environment": "development"})
    assert production_problems(development) == []
    assert review(development).unsafe == (problem,)


def test_no_keys_at_all_is_refused(tmp_path: Path) -> None:
    (problem,) = production_problems(load_settings(environment="production"))
    assert "no API keys, so authentication is off" in problem
    assert "LLM_OPTIMIZER_AUTH__API_KEYS_FILE" in problem


def test_our_documented_keys_and_modes(tmp_path: Path) -> None:
    """compose.yml's development key is refused in production; docs/systemd.md's way of making
    the keys file (a generated key, install -m MODE) gives one production accepts."""
    compose = (ROOT / "infra/docker/compose.yml").read_text()
    (dev_default,) = re.findall(r"OPTIMIZER_DEV_API_KEY:-([^}]+)}", compose)
    assert is_weak(dev_default)
    systemd_doc = (ROOT / "docs/systemd.md").read_text()
    (mode,) = re.findall(r"install -m (\d+) .*/etc/llm-optimizer/api-keys", systemd_doc)
    assert "token_urlsafe(32)" in systemd_doc
    assert production_problems(_production(tmp_path, mode=int(mode, 8))) == []


def _cli(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, args, env=env, catch_exceptions=False)


def _problem_lines(stderr: str) -> set[str]:
    return {line.strip() for line in stderr.splitlines() if line.startswith("  ")}


def test_serve_and_validate_refuse_the_same_problems(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"short-key\n{_sha('changeme')} read\n{STRONG_KEY}\n")
    keys.chmod(0o644)
    env = {
        "LLM_OPTIMIZER_ENVIRONMENT": "production",
        "LLM_OPTIMIZER_DATA_DIR": str(tmp_path / "data"),
        "LLM_OPTIMIZER_AUTH__API_KEYS_FILE": str(keys),
        "LLM_OPTIMIZER_REDIS__URL": "redis://:Passw0rd@cache:6379/0",
    }
    validate = _cli(["config", "validate"], env)
    serve = _cli(["serve"], env)
    assert validate.exit_code == serve.exit_code == 1
    assert "production refuses to start" in serve.stderr
    assert "Traceback" not in serve.output
    problems = _problem_lines(validate.stderr)
    assert problems == _problem_lines(serve.stderr)
    assert len(problems) == 4, problems
    for words in ("line 1: the key is too short", "line 2: the sha256 digest", "chmod 600"):
        assert any(words in problem for problem in problems), words
    assert any("LLM_OPTIMIZER_REDIS__URL" in problem for problem in problems)
    assert "short-key" not in validate.output + serve.output  # keys are never shown
    assert not (tmp_path / "data").exists()  # serve refused before touching anything


def test_development_warns_loudly(tmp_path: Path) -> None:
    env = {"LLM_OPTIMIZER_DATA_DIR": str(tmp_path), "LLM_OPTIMIZER_AUTH__API_KEYS": "dev-key"}
    result = _cli(["config", "validate"], env)
    assert result.exit_code == 0, result.output
    assert "WARNING: development mode" in result.stderr
    assert "  - LLM_OPTIMIZER_AUTH__API_KEYS item 1: the key is a well-known" in result.stderr
    assert "settings OK (environment=development, api keys=1" in result.stdout
    quiet = _cli(["config", "validate"], {**env, "LLM_OPTIMIZER_AUTH__API_KEYS": STRONG_KEY})
    assert quiet.exit_code == 0
    assert "WARNING" not in quiet.stderr


# --- a config file that cannot be used: every command says which file and exits 1 ---------------

BROKEN_CONFIGS: dict[str, tuple[str, bytes, str]] = {
    "broken-yaml": ("config.yaml", b"server:\n  http_port: [8080\n", "not valid YAML"),
    "broken-toml": ("config.toml", b"[server\nhttp_port = 1\n", "not valid TOML"),
    "list-at-top": ("config.yaml", b"- server\n- log\n", "the top level is a list"),
    "wrong-types": (
        "config.yaml",
        b"server:\n  http_port: eighty\n",
        "server.http_port (LLM_OPTIMIZER_SERVER__HTTP_PORT)",
    ),
    "empty": ("config.yaml", b"", "holds no settings"),
    "binary": ("config.yaml", bytes(range(256)) * 4, "not a text file"),
}


@pytest.mark.parametrize("command", [["serve"], ["config", "validate"], ["db", "upgrade"]])
@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_a_broken_config_file_is_named_and_nothing_runs(
    tmp_path: Path, case: str, command: list[str]
) -> None:
    name, content, words = BROKEN_CONFIGS[case]
    config = tmp_path / name
    config.write_bytes(content)
    data = tmp_path / "data"
    result = _cli(
        command, {"LLM_OPTIMIZER_CONFIG": str(config), "LLM_OPTIMIZER_DATA_DIR": str(data)}
    )
    assert result.exit_code == 1, result.output
    assert words in result.stderr
    assert f"LLM_OPTIMIZER_CONFIG={config}" in result.stderr
    assert "Traceback" not in result.output
    assert not data.exists()  # no database created, nothing started


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
    assert json.loads(as_json.stdout)["server"]["http_port"] == project.HTTP_PORT
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
