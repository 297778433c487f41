"""Create, verify and restore backups (the ``backup`` commands call these)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from llm_optimizer_service import __version__
from llm_optimizer_service.backup import database, redis_state
from llm_optimizer_service.backup.archive import (
    BackupError,
    Manifest,
    Part,
    archive_name,
    check_writable_dir,
    open_verified,
    sha256_file,
    write_archive,
)
from llm_optimizer_service.redis_keys import PREFIX
from llm_optimizer_service.settings import Settings, masked_dump
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.db import make_engine

CONFIG_PART = "config.json"
Step = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def default_dir(settings: Settings) -> Path:
    return settings.data_dir / "backups"


# --- revisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionCheck:
    revision: str | None
    head: str
    known: bool

    @property
    def older(self) -> bool:
        return self.known and self.revision != self.head

    def describe(self) -> str:
        shown = self.revision or "base (empty schema)"
        if not self.known:
            return f"schema {shown} is unknown to this release (head {self.head}): newer"
        if self.older:
            return f"schema {shown} is older than head {self.head}: restore migrates it up"
        return f"schema {shown} is this release's head"


def check_revision(revision: str | None) -> RevisionCheck:
    known = revision is None or revision in migrations.known_revisions()
    return RevisionCheck(revision, migrations.head_revision(), known)


# --- create ---------------------------------------------------------------------------------


def create(
    settings: Settings,
    output: Path | None = None,
    directory: Path | None = None,
    step: Step = _quiet,
) -> tuple[Path, Manifest]:
    """Dump the database and Redis, add the masked config and a manifest; one archive."""
    url = settings.database_url
    dialect = database.dialect_of(url)
    if dialect == "sqlite" and not database.sqlite_path(url).is_file():
        raise BackupError(
            f"{database.sqlite_path(url)}: no such SQLite database; check data_dir / "
            "database.url (or run db upgrade first)"
        )
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        step("reading the schema revision")
        try:
            revision = migrations.current_revision(engine)
        except Exception as exc:
            raise BackupError(f"cannot read the database ({type(exc).__name__}: {exc})") from exc
    finally:
        engine.dispose()
    checked = check_revision(revision)
    if revision is not None and not checked.known:
        raise BackupError(migrations.unknown_revision_message(revision, checked.head))
    now = datetime.now(UTC)
    if output is None:
        base = directory or default_dir(settings)
        output = base / archive_name(now)
        counter = 1
        while output.exists():
            output = base / archive_name(now).replace(".tar.gz", f"-{counter}.tar.gz")
            counter += 1
    check_writable_dir(output.parent)
    with tempfile.TemporaryDirectory(prefix="llm-optimizer-backup-") as work:
        files: dict[str, Path] = {}
        if dialect == "postgresql":
            step("pg_dump -Fc")
            files[database.PG_PART] = Path(work) / database.PG_PART
            database.dump_postgres(url, files[database.PG_PART])
        else:
            step("copying SQLite (online backup API)")
            files[database.SQLITE_PART] = Path(work) / database.SQLITE_PART
            database.dump_sqlite(url, files[database.SQLITE_PART])
        step("exporting Redis keys")
        files[redis_state.PART] = Path(work) / redis_state.PART
        redis_url = settings.redis.url.get_secret_value() if settings.redis.url else None
        redis_info = redis_state.export(redis_url, files[redis_state.PART])
        step("writing the masked config")
        files[CONFIG_PART] = Path(work) / CONFIG_PART
        files[CONFIG_PART].write_text(json.dumps(masked_dump(settings), indent=2) + "\n")
        step("checksums")
        parts = {
            name: Part(name, sha256_file(path), path.stat().st_size) for name, path in files.items()
        }
        manifest = Manifest(
            version=__version__,
            schema_revision=revision,
            created_at=now.isoformat(),
            dialect=dialect,
            parts=parts,
            redis=redis_info,
        )
        step(f"writing {output.name}")
        write_archive(output, manifest, files)
    return output, manifest


# --- verify ---------------------------------------------------------------------------------


def _check_parts(manifest: Manifest, work: Path) -> None:
    if manifest.dialect == "postgresql":
        if database.PG_PART not in manifest.parts:
            raise BackupError(f"the manifest names no {database.PG_PART} part")
        database.check_postgres_dump(work / database.PG_PART)
    elif manifest.dialect == "sqlite":
        if database.SQLITE_PART not in manifest.parts:
            raise BackupError(f"the manifest names no {database.SQLITE_PART} part")
        database.check_sqlite_copy(work / database.SQLITE_PART)
    else:
        raise BackupError(f"unknown database dialect {manifest.dialect!r} in the manifest")
    if redis_state.PART not in manifest.parts:
        raise BackupError(f"the manifest names no {redis_state.PART} part")
    redis_state.read_part(work / redis_state.PART)


def verify(path: Path, step: Step = _quiet) -> tuple[Manifest, RevisionCheck]:
    """Archive, checksums, manifest and each part's own format; touches no database.

    Raises BackupError when anything is wrong, including a schema newer than this release."""
    step(f"reading {path.name}")
    with open_verified(path) as (manifest, work):
        step("checking the parts")
        _check_parts(manifest, work)
    revision = check_revision(manifest.schema_revision)
    if not revision.known:
        raise BackupError(
            f"{path}: made by version {manifest.version} at schema revision "
            f"{manifest.schema_revision}, which this release ({__version__}, head "
            f"{revision.head}) does not know; restore with version {manifest.version} or "
            "newer"
        )
    return manifest, revision


# --- restore --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    database_url_masked: str
    migrated_from: str | None
    redis_keys: int | None


def restore(
    settings: Settings,
    path: Path,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    skip_redis: bool = False,
    force: bool = False,
    step: Step = _quiet,
) -> RestoreResult:
    """Verify ``path``, check the target, then replace the target's data (see database.py for
    the all-or-nothing guarantee per dialect). Raises BackupError before touching anything when
    a check fails."""
    url = database_url or settings.database_url
    dialect = database.dialect_of(url)
    if redis_url is None and settings.redis.url is not None:
        redis_url = settings.redis.url.get_secret_value()
    step(f"verifying {path.name}")
    with open_verified(path) as (manifest, work):
        _check_parts(manifest, work)
        revision = check_revision(manifest.schema_revision)
        if not revision.known:
            raise BackupError(
                f"{path}: schema revision {manifest.schema_revision} (version "
                f"{manifest.version}) is newer than this release's head {revision.head}; "
                f"restore with version {manifest.version} or newer. Nothing was changed"
            )
        if manifest.dialect != dialect:
            raise BackupError(
                f"{path} holds a {manifest.dialect} backup but the target is {dialect}; "
                "restore into a database of the same kind (use --database-url)"
            )
        entries = redis_state.read_part(work / redis_state.PART)
        step("checking the target")
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            try:
                filled = database.has_data(engine) if _exists(url, dialect) else []
            except Exception as exc:
                raise BackupError(
                    f"cannot read the target database ({type(exc).__name__}: {exc})"
                ) from exc
            if filled and not force:
                raise BackupError(
                    f"the target database is not empty (data in {', '.join(filled)}); "
                    "restore with --force to replace it. Nothing was changed"
                )
            use_redis = redis_url is not None and not skip_redis
            if use_redis and not force and redis_state.existing_keys(redis_url or "") > 0:
                raise BackupError(
                    f"Redis already holds {PREFIX}* keys; restore with --force "
                    "to replace them (or --skip-redis). Nothing was changed"
                )
            if dialect == "postgresql":
                step("restoring PostgreSQL (one transaction)")
                database.restore_postgres(url, work / database.PG_PART, engine)
            else:
                step("restoring SQLite (fresh file, then swap)")
                database.restore_sqlite(
                    url, work / database.SQLITE_PART, lambda staged: _migrate(staged, revision)
                )
        finally:
            engine.dispose()
        if dialect == "postgresql" and revision.older:
            step(f"migrating up from {revision.revision or 'base'}")
            try:
                _migrate(url, revision)
            except Exception as exc:
                raise BackupError(
                    f"the data is restored at revision {revision.revision} but migrating it "
                    f"up failed: {exc}; run `llm-optimizer-service db upgrade`"
                ) from exc
        keys = None
        if use_redis:
            step("restoring Redis keys")
            keys = redis_state.restore(redis_url or "", entries)
    return RestoreResult(
        manifest, mask_url(url), (revision.revision or "base") if revision.older else None, keys
    )


def mask_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _exists(url: str, dialect: str) -> bool:
    return dialect != "sqlite" or database.sqlite_path(url).exists()


def _migrate(url: str, revision: RevisionCheck) -> None:
    if revision.older:
        migrations.upgrade(url, "head")


def summary(manifest: Manifest) -> dict[str, Any]:
    return json.loads(manifest.to_json())  # type: ignore[no-any-return]
