"""Alembic, driven from our CLI with the revisions shipped inside the package.

On PostgreSQL every migration command holds a session-level advisory lock, so replicas or Jobs
that migrate at the same time run one after the other instead of racing. ``--sql`` (offline mode)
prints the SQL and touches nothing.

A database at a revision this release does not ship was migrated by a newer release: every
command that reads the database refuses it with :class:`UnknownRevisionError` (its message says
what to do) before changing anything.
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
from sqlalchemy.exc import SQLAlchemyError

from llm_optimizer_service import __version__
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


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return heads[0]


def known_revisions() -> frozenset[str]:
    """Every revision this release ships."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


class UnknownRevisionError(Exception):
    """The database is at a revision this release does not ship (a newer release migrated it)."""


def unknown_revision_message(revision: str, head: str) -> str:
    return (
        f"the database schema is at revision {revision}, which this release (version "
        f"{__version__}, head {head}) does not know: it was migrated by a newer release; run "
        "that release, or restore a backup taken before the upgrade. Nothing was changed"
    )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str
    known: bool = True

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def problem(self) -> str | None:
        """Why this release must not use the database as it is (a newer schema), or None."""
        if self.known or self.current is None:
            return None
        return unknown_revision_message(self.current, self.head)


def schema_status(engine: Engine) -> SchemaStatus:
    current = current_revision(engine)
    known = current is None or current in known_revisions()
    return SchemaStatus(current=current, head=head_revision(), known=known)


def check_known(connection: Connection) -> None:
    """Raise :class:`UnknownRevisionError` when the database is at a revision not shipped here."""
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None and current not in known_revisions():
        raise UnknownRevisionError(unknown_revision_message(current, head_revision()))


def newer_schema_problem(url: str) -> str | None:
    """The message when the database at ``url`` was migrated by a newer release, else None (also
    when the database cannot be read: the caller's own connection reports that)."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        return schema_status(engine).problem
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


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
            check_known(connection)
            connection.commit()  # end the read: alembic opens its own transaction
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
