"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temp dir, pg_ctl start
on a free 127.0.0.1 port (socket dir inside the temp dir), stopped on exit.

PostgreSQL refuses to run as root, so as root (CI) the server runs as the ``postgres`` system
user via ``runuser``; elsewhere as the current user. Binaries come from the tool catalogue
(``pg_ctl``/``initdb`` from Debian's postgresql-15, found in /usr/lib/postgresql/15/bin) through
the caller's ``find_tool``: tests pass ``tests._support.tools.require_tool`` (skip when absent),
the benchmarks ``ops.core.tools.require`` (they run without pytest, so nothing here imports it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests._support.ports import free_port


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    data_dir: Path | None = None
    log_path: Path | None = None
    options: str = ""
    command_prefix: tuple[str, ...] = ()
    pg_ctl: Path | None = None

    def _pg_ctl(self, *args: str) -> None:
        if self.data_dir is None or self.pg_ctl is None:
            raise RuntimeError("this server was not started by postgres_server()")
        subprocess.run(
            [*self.command_prefix, str(self.pg_ctl), "-D", str(self.data_dir), *args],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Stop the server now (to test an outage); :meth:`start` brings it back."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", str(self.log_path), "-o", self.options, "-w", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def create_database(self, prefix: str = "test") -> str:
        """A fresh, uniquely named database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        if not name.startswith("test_"):  # destructive: only ever on our throwaway databases
            raise ValueError(f"refusing to drop {name!r}: not a test database")
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_user() -> tuple[list[str], str, int | None]:
    """Command prefix to run the server, the role name, and the uid owning the data dir."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid()).pw_name, None
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    entry = pwd.getpwnam("postgres")
    return [runuser, "-u", "postgres", "--"], "postgres", entry.pw_uid


@contextlib.contextmanager
def postgres_server(
    find_tool: Callable[[str], Path],
    *,
    fsync: bool = False,
    listen: Sequence[str] = ("127.0.0.1",),
    trust: Sequence[str] = (),
) -> Iterator[PostgresServer]:
    """Start a PostgreSQL server for the duration of the block. ``fsync=False`` (the default)
    for speed where the disk is not what is measured or tested. ``listen``: its addresses (the
    first one is the server's ``host``); ``trust``: networks (CIDR) allowed in without a
    password besides the local ones, e.g. the pods of the real node (tests/infra/node)."""
    initdb = find_tool("initdb")
    pg_ctl = find_tool("pg_ctl")
    prefix, user, uid = _as_user()
    base = Path(tempfile.mkdtemp(prefix="llm-optimizer-pg-"))
    data, sockets, log = base / "data", base / "sock", base / "postgres.log"
    sockets.mkdir()
    if uid is not None:
        for path in (base, sockets):
            os.chown(path, uid, -1)
    port = free_port()
    subprocess.run(
        [*prefix, str(initdb), "-D", str(data), "--auth=trust", "-U", user, "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    with (data / "pg_hba.conf").open("a") as hba:
        hba.writelines(f"host all all {network} trust\n" for network in trust)
    options = (
        f"-p {port} -c listen_addresses={','.join(listen)} -k {sockets} "
        f"-c fsync={'on' if fsync else 'off'}"
    )
    subprocess.run(
        [*prefix, str(pg_ctl), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer(listen[0], port, user, data, log, options, tuple(prefix), pg_ctl)
    finally:
        subprocess.run(
            [*prefix, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
