"""backup create/verify/list/restore on real PostgreSQL, SQLite and Redis (issue 10).

Round trips compare every table's row count and content checksum; bad archives and refused
restores leave the target untouched, proven by the same checksums.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.api import create_app
from llm_optimizer_service.cli import app
from llm_optimizer_service.redis_keys import PREFIX
from llm_optimizer_service.settings import load_settings
from llm_optimizer_service.storage import migrations
from typer.testing import CliRunner, Result

from tests._support.postgres import PostgresServer
from tests._support.redis_server import RedisServer
from tests.service.backup._data import redis_snapshot, seed, seed_redis, snapshot

pytestmark = pytest.mark.usefixtures("pg_tools")

Cli = Callable[..., Result]


@pytest.fixture(scope="session")
def pg_tools() -> None:
    from tests._support.tools import require_tool

    for name in ("pg_dump", "pg_restore", "psql"):
        require_tool(name)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """Run the service CLI in-process with LLM_OPTIMIZER_* settings given as keyword env."""
    for name in list(__import__("os").environ):
        if name.startswith("LLM_OPTIMIZER_") or name.startswith("RESTORE_"):
            monkeypatch.delenv(name)
    runner = CliRunner()

    def run(*args: str, url: str | None = None, redis: str | None = None, **env: str) -> Result:
        values = {"LLM_OPTIMIZER_DATA_DIR": str(tmp_path / "data"), **env}
        if url is not None:
            values["LLM_OPTIMIZER_DATABASE__URL"] = url
        if redis is not None:
            values["LLM_OPTIMIZER_REDIS__URL"] = redis
        return runner.invoke(app, list(args), env=values, catch_exceptions=False)

    return run


@pytest.fixture
def second_url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture
def db_url(database_url: str) -> str:
    """SQLite and PostgreSQL (tests/service/conftest.py)."""
    return database_url


def _create(cli: Cli, backups: Path, **kwargs: str) -> Path:
    result = cli("backup", "create", "--dir", str(backups), "--json", **kwargs)
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["path"])


def _wipe(url: str) -> None:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).unlink()
    else:
        migrations.downgrade(url, "base")


def test_round_trip(cli: Cli, db_url: str, redis: RedisServer, tmp_path: Path) -> None:
    """Seed, back up, wipe, restore: every table and every owned Redis key is identical."""
    seed(db_url)
    seed_redis(redis.url)
    before, redis_before = snapshot(db_url), redis_snapshot(redis.url)
    assert before["feedback"][0] == 30
    assert before["policy_audit"][0] == 3
    assert before["evaluations"][0] == 1  # the whole database is backed up: every table
    archive = _create(cli, tmp_path / "backups", url=db_url, redis=redis.url)

    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile("config.json"))  # type: ignore[arg-type]
    dump = "database.pgdump" if db_url.startswith("postgresql") else "database.sqlite"
    assert names == sorted(["manifest.json", dump, "redis.jsonl", "config.json"])
    assert manifest["schema_revision"] == migrations.head_revision()
    assert manifest["redis"] == {"configured": True, "keys": 3, "prefix": PREFIX}
    assert set(manifest["parts"]) == {dump, "redis.jsonl", "config.json"}
    assert config["redis"]["url"] == "***"

    _wipe(db_url)
    redis.client().flushall()
    result = cli("backup", "restore", str(archive), url=db_url, redis=redis.url)
    assert result.exit_code == 0, result.output
    assert snapshot(db_url) == before
    assert redis_snapshot(redis.url) == redis_before
    assert redis.client().get("someone-else:key") is None  # only the service's keys are restored
    # The restored database keeps working: sequences continue, new rows go in.
    seed(db_url, workload="after-restore", decisions=10)
    redis.client().flushall()


def test_restore_drill_identical_reports(
    cli: Cli, postgres_url: str, second_url: str, tmp_path: Path
) -> None:
    """Restore into a second, empty database (--database-url): both give the same report."""
    seed(postgres_url)
    archive = _create(cli, tmp_path / "backups", url=postgres_url)
    migrations.upgrade(second_url)  # an empty, migrated database counts as empty
    result = cli(
        "backup",
        "restore",
        str(archive),
        "--json",
        url=postgres_url,
        RESTORE_DATABASE_URL=second_url,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["database"].endswith(second_url.rsplit("/", 1)[1])
    assert snapshot(second_url) == snapshot(postgres_url)

    def report(url: str) -> object:
        settings = load_settings(
            data_dir=tmp_path, database={"url": url}, auth={"api_keys": "drill-key"}
        )
        with TestClient(create_app(settings)) as client:
            response = client.get(
                "/api/v1/workloads/chat/report", headers={"Authorization": "Bearer drill-key"}
            )
        assert response.status_code == 200, response.text
        return response.json()

    assert report(second_url) == report(postgres_url)


def test_sqlite_restore_drill_to_other_file(cli: Cli, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    target = f"sqlite:///{tmp_path / 'drill' / 'b.db'}"
    seed(source)
    archive = _create(cli, tmp_path / "backups", url=source)
    result = cli("backup", "restore", str(archive), url=source, RESTORE_DATABASE_URL=target)
    assert result.exit_code == 0, result.output
    assert snapshot(target) == snapshot(source)


# --- bad input: clear error, nothing lost ----------------------------------------------------


def _rewrite(archive: Path, out: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    edit(members)
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def _truncated(archive: Path, out: Path) -> Path:
    out.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return out


def _flipped(archive: Path, out: Path) -> Path:
    raw = bytearray(gzip.decompress(archive.read_bytes()))
    with tarfile.open(archive) as tar:  # flip one byte inside the dump, re-compress validly
        member = next(m for m in tar if m.name.startswith("database."))
    raw[member.offset_data + member.size // 2] ^= 0x01
    out.write_bytes(gzip.compress(bytes(raw)))
    return out


def _missing_part(archive: Path, out: Path) -> Path:
    return _rewrite(archive, out, lambda m: m.pop("database.pgdump"))


def _newer_schema(archive: Path, out: Path) -> Path:
    def edit(members: dict[str, bytes]) -> None:
        data = json.loads(members["manifest.json"])
        data["schema_revision"], data["version"] = "9999_from_the_future", "99.0.0"
        members["manifest.json"] = json.dumps(data).encode()

    return _rewrite(archive, out, edit)


def _truncated_tar(archive: Path, out: Path) -> Path:
    """A valid gzip stream around a tar cut off in the middle of the dump."""
    raw = gzip.decompress(archive.read_bytes())
    out.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return out


def _manifest_edited(archive: Path, out: Path) -> Path:
    """The manifest claims another checksum for the dump (edited by hand or by an attacker)."""

    def edit(members: dict[str, bytes]) -> None:
        data = json.loads(members["manifest.json"])
        data["parts"]["database.pgdump"]["sha256"] = "0" * 64
        members["manifest.json"] = json.dumps(data).encode()

    return _rewrite(archive, out, edit)


def _extra_member(archive: Path, out: Path) -> Path:
    return _rewrite(archive, out, lambda m: m.update({"notes.txt": b"not in the manifest"}))


def _with_member(archive: Path, out: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A copy of ``archive`` with one more member appended (a link or a hostile path)."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(out, "w:gz") as tar:
        for member, content in [*members, (info, data)]:
            tar.addfile(member, io.BytesIO(content) if member.isfile() else None)
    return out


def _symlink(archive: Path, out: Path) -> Path:
    info = tarfile.TarInfo("redis.jsonl.link")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return _with_member(archive, out, info)


# Where a member named ../<name> or /tmp/<name> would land if extraction followed it.
ESCAPE = Path(tempfile.gettempdir()) / "llm-optimizer-backup-test-escaped"


def _file_named(name: str) -> Callable[[Path, Path], Path]:
    def make(archive: Path, out: Path) -> Path:
        info = tarfile.TarInfo(name)
        info.size = 4
        return _with_member(archive, out, info, b"evil")

    return make


BAD = {
    "truncated": (_truncated, "damaged or truncated"),
    "truncated-tar": (_truncated_tar, "damaged or truncated"),
    "flipped-byte": (_flipped, "fails its checksum"),
    "manifest-edited": (_manifest_edited, "'database.pgdump' fails its checksum"),
    "missing-part": (_missing_part, "'database.pgdump' named in the manifest is missing"),
    "extra-member": (_extra_member, "parts not named in the manifest: notes.txt"),
    "symlink-member": (_symlink, "unexpected archive member 'redis.jsonl.link'"),
    "path-traversal": (_file_named(f"../{ESCAPE.name}"), f"member '../{ESCAPE.name}'"),
    "absolute-path": (_file_named(str(ESCAPE)), f"unexpected archive member '{ESCAPE}'"),
    "newer-schema": (_newer_schema, "restore with version 99.0.0 or newer"),
}


@pytest.fixture(scope="module")
def good_archive(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One PostgreSQL backup, shared by the bad-input tests (they derive broken copies)."""
    from llm_optimizer_service.backup import core

    url = postgres.create_database()
    seed(url, workload="source")
    settings = load_settings(data_dir=tmp_path_factory.mktemp("d"), database={"url": url})
    path, _ = core.create(settings, directory=tmp_path_factory.mktemp("backups"))
    yield path
    postgres.drop_database(url)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_archive_leaves_target_untouched(
    cli: Cli, good_archive: Path, postgres_url: str, tmp_path: Path, kind: str
) -> None:
    make, message = BAD[kind]
    bad = make(good_archive, tmp_path / f"{kind}.tar.gz")
    seed(postgres_url, workload="precious", decisions=20)
    before = snapshot(postgres_url)

    verify = cli("backup", "verify", str(bad), url=postgres_url)
    assert verify.exit_code == 1
    assert message in verify.stderr
    restore = cli("backup", "restore", "--force", str(bad), url=postgres_url)
    assert restore.exit_code == 1
    assert message in restore.stderr
    assert snapshot(postgres_url) == before
    assert not ESCAPE.exists()  # nothing was extracted outside the private directory


def test_refuses_non_empty_target_without_force(
    cli: Cli, good_archive: Path, postgres_url: str
) -> None:
    seed(postgres_url, workload="precious", decisions=20)
    before = snapshot(postgres_url)
    result = cli("backup", "restore", str(good_archive), url=postgres_url)
    assert result.exit_code == 1
    assert "not empty" in result.stderr
    assert "--force" in result.stderr
    assert snapshot(postgres_url) == before
    forced = cli("backup", "restore", "--force", str(good_archive), url=postgres_url)
    assert forced.exit_code == 0, forced.output
    assert snapshot(postgres_url) != before


def test_failure_during_restore_rolls_back(
    cli: Cli, postgres_url: str, second_url: str, tmp_path: Path
) -> None:
    """A dump that passes every check but fails half way in (a type that already exists in the
    target): the single transaction rolls back, the target is exactly as it was."""
    seed(postgres_url)
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('happy')")
    archive = _create(cli, tmp_path / "backups", url=postgres_url)
    seed(second_url, workload="precious", decisions=20)
    with psycopg.connect(second_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad')")
    before = snapshot(second_url)
    result = cli("backup", "restore", "--force", str(archive), url=second_url)
    assert result.exit_code == 1
    assert "rolled back: the target is unchanged" in result.stderr
    assert 'type "mood" already exists' in result.stderr
    assert snapshot(second_url) == before


def test_older_backup_is_migrated_up(
    cli: Cli, postgres_url: str, second_url: str, tmp_path: Path
) -> None:
    migrations.upgrade(postgres_url)
    migrations.downgrade(postgres_url, "base")  # a backup from before the first revision
    archive = _create(cli, tmp_path / "backups", url=postgres_url)
    result = cli("backup", "restore", "--json", str(archive), url=second_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["migrated_from"] == "base"
    assert snapshot(second_url)["schema"] == (0, migrations.head_revision())


def test_cross_dialect_refused(cli: Cli, good_archive: Path, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'x.db'}"
    result = cli("backup", "restore", str(good_archive), url=target)
    assert result.exit_code == 1
    assert "postgresql backup but the target is sqlite" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_verify_ok_and_list_retention(cli: Cli, good_archive: Path, tmp_path: Path) -> None:
    ok = cli("backup", "verify", str(good_archive))
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.stdout
    assert "this release's head" in ok.stdout

    backups = tmp_path / "backups"
    backups.mkdir()
    names = [f"llm-optimizer-backup-202601{day:02d}T010000Z.tar.gz" for day in (1, 2, 3, 4)]
    for name in [*names, "unrelated.txt"]:
        (backups / name).write_bytes(good_archive.read_bytes())
    listed = cli("backup", "list", "--dir", str(backups), "--json")
    assert [Path(r["path"]).name for r in json.loads(listed.stdout)] == names[::-1]

    dry = cli("backup", "list", "--dir", str(backups), "--keep", "2", "--dry-run")
    assert dry.stdout.count("(expired)") == 2
    assert len(list(backups.iterdir())) == 5
    kept = cli("backup", "list", "--dir", str(backups), "--keep", "3", "--keep-days", "1")
    assert kept.exit_code == 0
    assert sorted(p.name for p in backups.iterdir()) == sorted([*names[1:], "unrelated.txt"])
    gone = cli("backup", "list", "--dir", str(backups), "--keep-days", "0")
    assert gone.exit_code == 0
    assert sorted(p.name for p in backups.iterdir()) == [names[3], "unrelated.txt"]


def test_backup_of_missing_database_fails_clearly(cli: Cli, tmp_path: Path) -> None:
    result = cli("backup", "create", url=f"sqlite:///{tmp_path / 'nothing.db'}")
    assert result.exit_code == 1
    assert "backup failed" in result.stderr


def test_backup_into_an_unwritable_directory_fails_before_dumping(cli: Cli, tmp_path: Path) -> None:
    """A --dir that cannot be created (here: under a regular file, which holds even for root)
    fails at once, naming the directory and the fix, and leaves nothing behind."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    migrations.upgrade(url)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    before = sorted(tmp_path.rglob("*"))
    result = cli("backup", "create", "--dir", str(blocker / "backups"), url=url)
    assert result.exit_code == 1, result.output
    assert f"cannot create the backup directory {blocker / 'backups'}" in result.stderr
    assert "--dir or --output" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_progress_shown_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal (stderr is a tty) create shows rich progress; piped, it prints none."""
    import os
    import pty
    import subprocess

    from tests._support.service import service_command

    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrations.upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
    env.update({"LLM_OPTIMIZER_DATABASE__URL": url, "LLM_OPTIMIZER_DATA_DIR": str(tmp_path)})
    env.update({"COLUMNS": "120", "TERM": "xterm"})
    master, slave = pty.openpty()
    try:
        run = subprocess.run(
            [*service_command(), "backup", "create", "--dir", str(tmp_path / "b")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=120,
            check=False,
        )
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert run.returncode == 0, shown
    assert b"backup: writing llm-optimizer-backup-" in shown
    assert b"backup written:" in run.stdout
