"""Alembic, driven from our CLI with the revisions shipped inside the package.

On PostgreSQL every migration command holds a session-level advisory lock, so replicas or Jobs
that migrate at the same time run one after the other instead of racing. ``--sql`` (offline mode)
prints the SQL and touches nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from llm_optimizer_service.storage.db import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_lock key: a fixed 63-bit number derived once from "llm-optimizer:migrations".
ADVISORY_LOCK_KEY = 0x6C6C6D2D6F707469


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def schema_status(engine: Engine) -> SchemaStatus:
    return SchemaStatus(current=current_revision(engine), head=head_revision())


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        locking = connection.dialect.name == "postgresql"
        if locking:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
        try:
            yield connection
        finally:
            if locking:
                connection.rollback()
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                connection.commit()


def _run(url: str, action: str, *args: object, sql: bool = False, **kwargs: object) -> str:
    """Run an Alembic command; returns what it printed (the SQL in offline mode)."""
    out = io.StringIO()
    function = getattr(command, action)
    if sql:
        config = alembic_config(url)
        config.stdout = out
        with redirect_stdout(out):
            function(config, *args, sql=True, **kwargs)
        return out.getvalue()
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with _locked(engine) as connection:
            config = alembic_config(url, connection)
            config.stdout = out
            function(config, *args, **kwargs)
            connection.commit()
    finally:
        engine.dispose()
    return out.getvalue()


def upgrade(url: str, revision: str = "head", *, sql: bool = False) -> str:
    return _run(url, "upgrade", revision, sql=sql)


def downgrade(url: str, revision: str = "-1", *, sql: bool = False) -> str:
    if sql and ":" not in revision:
        # Offline downgrades need an explicit range; from head is what people mean.
        revision = f"{head_revision()}:{revision}"
    return _run(url, "downgrade", revision, sql=sql)


def current(url: str) -> str:
    return _run(url, "current", verbose=False)


def history(url: str) -> str:
    out = io.StringIO()
    config = alembic_config(url)
    config.stdout = out
    command.history(config, verbose=False)
    return out.getvalue()


def check(url: str) -> str:
    """Raises alembic.util.CommandError when the models and the migrated schema differ."""
    return _run(url, "check")
