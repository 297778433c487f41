"""Migrations on SQLite and PostgreSQL: up, down, up again, the models match (`db check`),
`--sql` prints without applying, concurrent upgrades serialise on the advisory lock, and a
database migrated by a newer release is refused by every command."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.util import CommandError
from llm_optimizer_service import __version__
from llm_optimizer_service.cli import app
from llm_optimizer_service.runtime import Runtime, SchemaNotAtHeadError
from llm_optimizer_service.settings import load_settings
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.db import make_engine
from typer.testing import CliRunner, Result

from tests._support.tools import free_port
from tests.service.backup._data import seed, snapshot

TABLES = {
    "workloads",
    "arm_stats",
    "context_arm_stats",
    "decisions",
    "feedback",
    "policy_audit",
    "evaluations",
    "alembic_version",
}


@pytest.fixture
def url(database_url: str) -> str:
    """SQLite and PostgreSQL (tests/service/conftest.py)."""
    return database_url


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def cli(url: str, *args: str) -> Result:
    """The real CLI, in process (a subprocess per call would cost seconds of imports)."""
    return CliRunner().invoke(app, list(args), env={"LLM_OPTIMIZER_DATABASE__URL": url})


def test_up_down_up_and_check(url: str) -> None:
    head = migrations.head_revision()
    with pytest.raises(CommandError):
        migrations.check(url)  # an empty database is not at head
    migrations.upgrade(url)
    assert tables(url) == TABLES
    assert migrations.current(url).startswith(head)
    migrations.check(url)
    migrations.downgrade(url, "base")
    assert tables(url) <= {"alembic_version"}
    migrations.upgrade(url)
    assert tables(url) == TABLES
    migrations.check(url)


def test_cli_db_commands(url: str) -> None:
    failed = cli(url, "db", "check")
    assert failed.exit_code != 0
    assert "db check" in failed.stderr
    sql = cli(url, "db", "upgrade", "--sql")
    assert sql.exit_code == 0, sql.stderr
    assert "CREATE TABLE workloads" in sql.stdout
    assert "CREATE INDEX ix_feedback_workload_created" in sql.stdout  # 0004, budgets
    assert "CREATE TABLE evaluations" in sql.stdout  # 0005, stored evaluations
    assert tables(url) <= {"alembic_version"}  # --sql applied nothing
    assert cli(url, "db", "upgrade").exit_code == 0
    current = cli(url, "db", "current")
    assert migrations.head_revision() in current.stdout
    assert cli(url, "db", "check").exit_code == 0
    assert "initial schema" in cli(url, "db", "history").stdout
    down_sql = cli(url, "db", "downgrade", "base", "--sql")
    assert "DROP TABLE workloads" in down_sql.stdout
    assert "DROP INDEX ix_feedback_workload_created" in down_sql.stdout
    assert "DROP TABLE evaluations" in down_sql.stdout
    assert cli(url, "db", "downgrade", "base").exit_code == 0
    assert cli(url, "db", "check").exit_code != 0


def test_concurrent_upgrades_serialise(postgres_url: str) -> None:
    """Replicas or Jobs migrating at once: the advisory lock makes them take turns."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrations.upgrade(postgres_url)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    migrations.check(postgres_url)


FUTURE = "f00dfeedbeef"  # a revision no release of ours has shipped


def _migrated_by_a_newer_release(url: str) -> None:
    seed(url, workload="precious", decisions=5)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE}
            )
    finally:
        engine.dispose()


def test_a_newer_schema_is_refused_by_every_command(url: str, tmp_path: Path) -> None:
    """Stamped with a revision this release does not ship (as a newer release leaves it): each
    command says so, what to do, exits non-zero and changes nothing."""
    _migrated_by_a_newer_release(url)
    before = snapshot(url)
    backups = tmp_path / "backups"
    env = {
        "LLM_OPTIMIZER_DATABASE__URL": url,
        "LLM_OPTIMIZER_DATA_DIR": str(tmp_path / "data"),
        "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(free_port()),
        "LLM_OPTIMIZER_AUTH__API_KEYS": "k-" + "9c1d" * 10,
    }
    production = {**env, "LLM_OPTIMIZER_ENVIRONMENT": "production"}
    head = migrations.head_revision()
    said = (
        f"the database schema is at revision {FUTURE}, which this release (version "
        f"{__version__}, head {head}) does not know: it was migrated by a newer release; run "
        "that release, or restore a backup taken before the upgrade"
    )
    runner = CliRunner()
    for command, variables in (
        (["db", "upgrade"], env),
        (["db", "current"], env),
        (["db", "check"], env),
        (["db", "downgrade"], env),
        (["backup", "create", "--dir", str(backups)], env),
        (["serve"], env),
        (["serve"], production),
    ):
        result = runner.invoke(app, command, env=variables, catch_exceptions=False)
        assert result.exit_code == 1, (command, result.output)
        assert said in result.stderr, (command, result.stderr)
    health = runner.invoke(
        app, ["health", "--json", "--url", "http://127.0.0.1:9", "--timeout", "1"], env=env
    )
    assert health.exit_code == 1
    assert json.loads(health.stdout)["checks"]["database"]["detail"].startswith(said)
    assert snapshot(url) == before
    assert not backups.exists() or not any(backups.iterdir())


def test_the_runtime_refuses_a_newer_schema_even_when_it_may_migrate(
    url: str, tmp_path: Path
) -> None:
    """The app itself (not only the CLI's check) refuses, also in development where it would
    otherwise auto-migrate: nothing is migrated or written."""
    _migrated_by_a_newer_release(url)
    before = snapshot(url)
    settings = load_settings(data_dir=tmp_path, database={"url": url})
    assert settings.auto_migrate
    runtime = Runtime(settings)
    with pytest.raises(SchemaNotAtHeadError, match="migrated by a newer release"):
        asyncio.run(runtime.start())
    runtime.engine.dispose()
    assert snapshot(url) == before
