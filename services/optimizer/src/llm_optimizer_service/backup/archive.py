"""The backup archive: one gzip-compressed tar holding ``manifest.json`` and the parts it names.

Layout (format 1)::

    manifest.json          format, service version, schema revision, created_at, dialect,
                           and for every part its file name, size and sha256
    database.pgdump        PostgreSQL: ``pg_dump -Fc`` output        } exactly one of these
    database.sqlite        SQLite: a copy made with the online backup API }
    redis.jsonl            the Redis keys the service owns (DUMP payloads); empty when no Redis
    config.json            the effective settings, secrets masked (for reference; never restored)

Writing is atomic: a temporary file in the destination directory, fsync, rename, fsync of the
directory. Reading (:func:`open_verified`) checks the manifest and every checksum while
extracting into a private directory, so what is restored is exactly what was verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FORMAT = 1
MANIFEST = "manifest.json"
SUFFIX = ".tar.gz"
PREFIX = "llm-optimizer-backup-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d{{8}}T\d{{6}}Z)(?:-[0-9a-z]+)?{re.escape(SUFFIX)}$")
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore problem; the message names what is wrong and what to do."""


@dataclass(frozen=True)
class Part:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    version: str
    schema_revision: str | None
    created_at: str
    dialect: str
    parts: dict[str, Part]
    redis: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

    def to_json(self) -> str:
        data = {
            "format": self.format,
            "service": "llm-optimizer-service",
            "version": self.version,
            "schema_revision": self.schema_revision,
            "created_at": self.created_at,
            "dialect": self.dialect,
            "redis": self.redis,
            "parts": {
                name: {"sha256": part.sha256, "size": part.size}
                for name, part in sorted(self.parts.items())
            },
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: bytes) -> Manifest:
        try:
            data = json.loads(text)
            fmt = int(data["format"])
            if fmt > FORMAT:
                raise BackupError(
                    f"manifest format {fmt} is newer than this release understands ({FORMAT}); "
                    "restore with the release that made the backup or a newer one"
                )
            parts = {
                str(name): Part(str(name), str(value["sha256"]), int(value["size"]))
                for name, value in data["parts"].items()
            }
            return cls(
                version=str(data["version"]),
                schema_revision=data["schema_revision"],
                created_at=str(data["created_at"]),
                dialect=str(data["dialect"]),
                parts=parts,
                redis=dict(data.get("redis") or {}),
                format=fmt,
            )
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(
                f"manifest.json is malformed ({type(exc).__name__}: {exc}); the archive is "
                "not a backup made by llm-optimizer-service"
            ) from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def archive_name(moment: datetime) -> str:
    return f"{PREFIX}{moment.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable_dir(directory: Path) -> None:
    """Create ``directory`` if needed; raise :class:`BackupError` unless this user can write it.
    Checked before anything is dumped, so a wrong directory fails at once, not after the dump."""
    fix = "choose one this user can write with --dir or --output"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(
            f"cannot create the backup directory {directory} ({exc.strerror}); {fix}"
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BackupError(
            f"the backup directory {directory} is not writable by uid {os.getuid()}; {fix}"
        )


def write_archive(destination: Path, manifest: Manifest, files: dict[str, Path]) -> Path:
    """Write manifest + ``files`` (part name → file) to ``destination`` atomically. Its directory
    was checked with :func:`check_writable_dir` before the dump (``core.create``)."""
    if destination.exists():
        raise BackupError(f"{destination} already exists; choose another --output")
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                payload = manifest.to_json().encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(payload)
                info.mtime = int(datetime.now(UTC).timestamp())
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(payload))
                for name in sorted(files):
                    tar.add(str(files[name]), arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, destination)
        _fsync_dir(destination.parent)
    except OSError as exc:  # e.g. the disk filled up: nothing is left behind
        temp.unlink(missing_ok=True)
        raise BackupError(f"cannot write {destination} ({exc.strerror or exc})") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return destination


@contextlib.contextmanager
def open_verified(path: Path) -> Iterator[tuple[Manifest, Path]]:
    """Check ``path`` and extract it into a private temporary directory (removed on exit).

    Raises :class:`BackupError` on a missing, truncated or corrupt archive, a malformed
    manifest, a missing, unexpected or altered part. Touches no database."""
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    work = Path(tempfile.mkdtemp(prefix="llm-optimizer-restore-"))
    try:
        manifest = _extract(path, work)
        yield manifest, work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(path: Path, work: Path) -> Manifest:
    found: dict[str, tuple[str, int]] = {}
    manifest_bytes: bytes | None = None
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise BackupError(f"{path}: unexpected archive member {member.name!r}")
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() above
                    raise BackupError(f"{path}: cannot read {member.name!r}")
                if member.name == MANIFEST:
                    manifest_bytes = source.read()
                    continue
                digest = hashlib.sha256()
                size = 0
                with (work / member.name).open("wb") as target:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        target.write(chunk)
                found[member.name] = (digest.hexdigest(), size)
    except (tarfile.TarError, EOFError, OSError, zlib_error()) as exc:
        raise BackupError(
            f"{path}: the archive is damaged or truncated ({type(exc).__name__}: {exc}); "
            "use another backup"
        ) from exc
    if manifest_bytes is None:
        raise BackupError(f"{path}: manifest.json is missing; not a llm-optimizer-service backup")
    manifest = Manifest.from_json(manifest_bytes)
    for name, part in manifest.parts.items():
        if name not in found:
            raise BackupError(f"{path}: part {name!r} named in the manifest is missing")
        actual, size = found[name]
        if actual != part.sha256 or size != part.size:
            raise BackupError(
                f"{path}: part {name!r} fails its checksum (sha256 {actual[:12]}…, manifest "
                f"says {part.sha256[:12]}…); the archive was altered or damaged"
            )
    extra = sorted(set(found) - set(manifest.parts))
    if extra:
        raise BackupError(f"{path}: parts not named in the manifest: {', '.join(extra)}")
    return manifest


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


# --- listing and retention ------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveEntry:
    path: Path
    created_at: datetime
    size: int


def list_archives(directory: Path) -> list[ArchiveEntry]:
    """Backups in ``directory`` (by file name), newest first."""
    if not directory.is_dir():
        return []
    entries = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            moment = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            entries.append(ArchiveEntry(path, moment, path.stat().st_size))
    return sorted(entries, key=lambda entry: (entry.created_at, entry.path.name), reverse=True)


def expired(
    entries: list[ArchiveEntry],
    keep: int | None,
    keep_days: float | None,
    now: datetime | None = None,
) -> list[ArchiveEntry]:
    """Entries (newest first) that fall outside the retention: beyond the newest ``keep`` AND
    (when both are given) older than ``keep_days``. The newest backup is never expired."""
    if keep is None and keep_days is None:
        return []
    moment = now or datetime.now(UTC)
    doomed = []
    for index, entry in enumerate(entries):
        if index == 0:
            continue
        beyond_count = keep is None or index >= keep
        too_old = keep_days is None or entry.created_at < moment - timedelta(days=keep_days)
        if beyond_count and too_old:
            doomed.append(entry)
    return doomed
