"""Database parts: dump and restore for PostgreSQL (``pg_dump -Fc`` / ``pg_restore`` + ``psql``)
and SQLite (the online backup API).

All-or-nothing, per dialect:

- **PostgreSQL: one transaction.** ``pg_restore`` turns the dump into SQL, and ``psql
  --single-transaction -v ON_ERROR_STOP=1`` runs, in ONE transaction: the migrations' advisory
  lock (``pg_advisory_xact_lock``), ``DROP TABLE … CASCADE`` of every table in the target
  schema, then the dump's DDL and data. Any error rolls the whole transaction back: the target is
  as it was.
- **SQLite: fresh file and swap.** The backup copy is written next to the target as a temporary
  file, migrated, checked, fsynced and then renamed over the target (``os.replace``), removing
  the old file's ``-wal``/``-shm`` companions. Stop the service first: open connections would keep
  the old file.

Passwords never go on a command line: the PostgreSQL tools get them in ``PGPASSWORD``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import URL, make_url

from llm_optimizer_service.backup.archive import BackupError
from llm_optimizer_service.storage.migrations import ADVISORY_LOCK_KEY

PG_PART = "database.pgdump"
SQLITE_PART = "database.sqlite"
VERSION_TABLE = "alembic_version"
_PG_DIRS = Path("/usr/lib/postgresql")


def dialect_of(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise BackupError(f"backups support PostgreSQL and SQLite, not {backend!r}")
    return backend


def pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore``/``psql``: the newest /usr/lib/postgresql/N/bin, else PATH."""
    if _PG_DIRS.is_dir():
        versions = sorted(
            (p for p in _PG_DIRS.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        for version in versions:
            candidate = version / "bin" / name
            if os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found: install the PostgreSQL client tools (Debian: apt-get install "
            "postgresql-client-15) or put them on PATH"
        )
    return found


@dataclass(frozen=True)
class PgTarget:
    """libpq connection for the PostgreSQL tools: conninfo (no password) and env."""

    conninfo: str
    env: dict[str, str]

    @classmethod
    def from_url(cls, url: str) -> PgTarget:
        from psycopg.conninfo import make_conninfo

        parsed: URL = make_url(url)
        params: dict[str, str] = {
            key: str(value) for key, value in parsed.query.items() if isinstance(value, str)
        }
        if parsed.host:
            params["host"] = parsed.host
        if parsed.port:
            params["port"] = str(parsed.port)
        if parsed.username:
            params["user"] = parsed.username
        if parsed.database:
            params["dbname"] = parsed.database
        env = {**os.environ, "PGAPPNAME": "llm-optimizer-backup"}
        env.pop("PGPASSWORD", None)
        if parsed.password is not None:
            env["PGPASSWORD"] = str(parsed.password)
        return cls(make_conninfo("", **params), env)


def _run(argv: list[str], env: dict[str, str], what: str, *, quiet_stdout: bool = False) -> None:
    result = subprocess.run(
        argv,
        env=env,
        stdout=subprocess.DEVNULL if quiet_stdout else subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        tail = "\n  ".join(detail[-8:]) or f"exit {result.returncode}"
        raise BackupError(f"{what} failed:\n  {tail}")


# --- inspection -----------------------------------------------------------------------------


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def has_data(engine: Engine) -> list[str]:
    """Tables (other than alembic_version) holding at least one row."""
    filled = []
    with engine.connect() as connection:
        for table in sorted(inspect(connection).get_table_names()):
            if table == VERSION_TABLE:
                continue
            quoted = connection.dialect.identifier_preparer.quote(table)
            if connection.execute(text(f"SELECT 1 FROM {quoted} LIMIT 1")).first():  # noqa: S608
                filled.append(table)
    return filled


# --- PostgreSQL -----------------------------------------------------------------------------


def dump_postgres(url: str, destination: Path) -> None:
    target = PgTarget.from_url(url)
    _run(
        [
            pg_tool("pg_dump"),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--file",
            str(destination),
            "--dbname",
            target.conninfo,
        ],
        target.env,
        "pg_dump",
    )


def check_postgres_dump(dump: Path) -> None:
    """``pg_restore --list`` reads the whole table of contents: a damaged dump fails here."""
    _run([pg_tool("pg_restore"), "--list", str(dump)], dict(os.environ), "pg_restore --list")


def restore_postgres(url: str, dump: Path, engine: Engine) -> None:
    """Replace everything in the target's tables by the dump, in one transaction."""
    target = PgTarget.from_url(url)
    schema = inspect(engine).default_schema_name or "public"
    preparer = engine.dialect.identifier_preparer
    drops = "".join(
        f"DROP TABLE IF EXISTS {preparer.quote_schema(schema)}.{preparer.quote(t)} CASCADE;\n"
        for t in table_names(engine)
    )
    with tempfile.TemporaryDirectory(prefix="llm-optimizer-restore-sql-") as work:
        script = Path(work) / "restore.sql"
        with script.open("w") as handle:
            handle.write(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY});\n{drops}")
        body = Path(work) / "body.sql"
        _run(
            [
                pg_tool("pg_restore"),
                "--no-owner",
                "--no-privileges",
                "--file",
                str(body),
                str(dump),
            ],
            dict(os.environ),
            "pg_restore (reading the dump)",
        )
        with script.open("a") as handle, body.open() as source:
            shutil.copyfileobj(source, handle)
        _run(
            [
                pg_tool("psql"),
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set",
                "ON_ERROR_STOP=1",
                "--file",
                str(script),
                "--dbname",
                target.conninfo,
            ],
            target.env,
            "restoring into PostgreSQL (rolled back: the target is unchanged)",
            quiet_stdout=True,
        )


# --- SQLite ---------------------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def dump_sqlite(url: str, destination: Path) -> None:
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"{source_path}: no such SQLite database; run db upgrade first")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(destination)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def check_sqlite_copy(copy: Path) -> None:
    connection = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        result = connection.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the SQLite part is not a valid database: {exc}") from exc
    finally:
        connection.close()
    if result is None or result[0] != "ok":
        raise BackupError(f"the SQLite part fails its integrity check: {result}")


def restore_sqlite(url: str, copy: Path, prepare: Callable[[str], None]) -> None:
    """Stage ``copy`` beside the target, run ``prepare(staging_url)`` (migrations), then swap."""
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staged_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".restore", dir=target.parent
    )
    os.close(fd)
    staged = Path(staged_name)
    try:
        shutil.copyfile(copy, staged)
        prepare(f"sqlite:///{staged}")
        connection = sqlite3.connect(staged)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute("PRAGMA journal_mode=DELETE")
        finally:
            connection.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)
        with staged.open("rb") as handle:
            os.fsync(handle.fileno())
        if target.exists():  # fold the old file's WAL in, so no stale -wal outlives the swap
            old = sqlite3.connect(target, timeout=30)
            try:
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                old.close()
        os.replace(staged, target)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        fd_dir = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd_dir)
        finally:
            os.close(fd_dir)
    finally:
        staged.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)
