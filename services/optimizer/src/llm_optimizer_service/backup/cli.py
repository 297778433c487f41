"""``llm-optimizer-service backup create|verify|list|restore`` (registered by the main CLI)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from llm_optimizer_service.backup.archive import BackupError
from llm_optimizer_service.cli_support import err, fail, out, settings_or_fail

backup_app = typer.Typer(
    help="Back up and restore the database, the Redis keys and the masked config "
    "(docs/operations.md).",
    no_args_is_help=True,
)
DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="backup directory (default: <data_dir>/backups)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


@contextmanager
def _progress(title: str) -> Iterator[Callable[[str], None]]:
    """Rich progress on a terminal (stderr); silent otherwise."""
    if not err.is_terminal:
        yield lambda _step: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err
    ) as progress:
        task = progress.add_task(title)

        def step(text: str) -> None:
            progress.update(task, description=f"{title}: {text}")

        yield step


@backup_app.command("create")
def create(
    directory: DirOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="archive path (default: in --dir)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Back up the database (pg_dump -Fc or SQLite's online backup), the service's Redis keys
    and the masked config into one compressed archive, written atomically."""
    from llm_optimizer_service.backup import core

    settings = settings_or_fail()
    try:
        with _progress("backup") as step:
            path, manifest = core.create(settings, output, directory, step)
    except BackupError as exc:
        raise fail(f"backup failed: {exc}") from exc
    if as_json:
        sys.stdout.write(json.dumps({"path": str(path), **core.summary(manifest)}, indent=2) + "\n")
        return
    out.print(
        f"backup written: {path} ({path.stat().st_size} bytes, schema "
        f"{manifest.schema_revision}, {manifest.dialect}, redis keys "
        f"{manifest.redis.get('keys', 0)})",
        highlight=False,
        soft_wrap=True,
    )


@backup_app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="the backup archive")],
    as_json: JsonOption = False,
) -> None:
    """Check the archive, every part's checksum and the manifest, without touching any database.

    Exit 1 naming the problem (damaged, altered, missing part, schema newer than this release)."""
    from llm_optimizer_service.backup import core

    try:
        with _progress("verify") as step:
            manifest, revision = core.verify(path, step)
    except BackupError as exc:
        raise fail(f"verify failed: {exc}") from exc
    if as_json:
        data = {"path": str(path), "ok": True, **core.summary(manifest)}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out.print(
        f"{path}: OK — version {manifest.version}, {manifest.dialect}, created "
        f"{manifest.created_at}, {len(manifest.parts)} parts; {revision.describe()}",
        highlight=False,
        soft_wrap=True,
    )


@backup_app.command("list")
def list_(
    directory: DirOption = None,
    keep: Annotated[
        int | None, typer.Option(min=1, help="retention: keep the newest N archives")
    ] = None,
    keep_days: Annotated[
        float | None, typer.Option(min=0, help="retention: keep archives younger than DAYS")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="with --keep/--keep-days: only show what goes")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the archives in the backup dir, newest first; with --keep and/or --keep-days delete
    those outside the retention (both given: an archive goes when it is outside both). The
    newest archive is never deleted."""
    from llm_optimizer_service.backup import archive, core

    base = directory or core.default_dir(settings_or_fail())
    entries = archive.list_archives(base)
    doomed = archive.expired(entries, keep, keep_days, datetime.now(UTC))
    gone = {entry.path for entry in doomed}
    if not dry_run:
        for entry in doomed:
            entry.path.unlink(missing_ok=True)
    if as_json:
        rows = [
            {
                "path": str(e.path),
                "created_at": e.created_at.isoformat(),
                "size": e.size,
                "deleted": e.path in gone and not dry_run,
                "expired": e.path in gone,
            }
            for e in entries
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not entries:
        out.print(f"no backups in {base}", highlight=False)
        return
    for entry in entries:
        mark = ""
        if entry.path in gone:
            mark = "  (expired)" if dry_run else "  (deleted)"
        out.print(
            f"{entry.created_at:%Y-%m-%d %H:%M:%S}Z  {entry.size:>12}  {entry.path}{mark}",
            highlight=False,
            soft_wrap=True,
        )


@backup_app.command("restore")
def restore(
    path: Annotated[Path, typer.Argument(help="the backup archive")],
    force: Annotated[
        bool, typer.Option("--force", help="replace a target database that holds data")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="RESTORE_DATABASE_URL",
            help="restore into this database instead of the configured one (restore drills); "
            "pass a URL with a password via RESTORE_DATABASE_URL, not here",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="RESTORE_REDIS_URL",
            help="restore the Redis keys into this Redis instead of the configured one",
        ),
    ] = None,
    skip_redis: Annotated[
        bool, typer.Option("--skip-redis", help="restore the database only")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup: verify it first, refuse a non-empty target without --force, check the
    schema revision (migrate up if older, refuse if newer), then replace the data all or
    nothing (PostgreSQL: one transaction; SQLite: fresh file and swap). Stop the service first."""
    from llm_optimizer_service.backup import core

    settings = settings_or_fail()
    try:
        with _progress("restore") as step:
            result = core.restore(
                settings,
                path,
                database_url=database_url,
                redis_url=redis_url,
                skip_redis=skip_redis,
                force=force,
                step=step,
            )
    except BackupError as exc:
        raise fail(f"restore failed: {exc}") from exc
    data = {
        "path": str(path),
        "database": result.database_url_masked,
        "schema_revision": result.manifest.schema_revision,
        "migrated_from": result.migrated_from,
        "redis_keys": result.redis_keys,
    }
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    migrated = f", migrated up from {result.migrated_from}" if result.migrated_from else ""
    redis_text = "skipped" if result.redis_keys is None else f"{result.redis_keys} keys"
    out.print(
        f"restored {path} into {result.database_url_masked} (schema "
        f"{result.manifest.schema_revision}{migrated}; redis {redis_text})",
        highlight=False,
        soft_wrap=True,
    )
