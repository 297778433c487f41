"""Back up, verify and restore one million feedback rows on PostgreSQL (operations issue).

A throwaway PostgreSQL (fsync on: a restore writes for real) gets one workload with ROWS
decisions and ROWS feedback rows (``INSERT … SELECT generate_series``; 1,000,000, or 50,000 with
``--quick``). Then ``backup create`` (pg_dump -Fc + archive), ``backup verify`` and ``backup
restore`` into a second, empty database are timed through the service's own backup module, and
the archive size is printed. The target is the round trip itself: the restored row counts equal
the source's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg
from llm_optimizer_service.backup import core
from llm_optimizer_service.settings import load_settings
from llm_optimizer_service.storage import migrations

from ops.core import tools
from tests._support.postgres import postgres_server

from .common import Options, Target, table

ROWS = 1_000_000
QUICK_ROWS = 50_000
TABLES = ("workloads", "decisions", "feedback")
FILL = """
INSERT INTO workloads (name, spec, created_at, updated_at)
VALUES ('bench', '{"arms": [{"name": "a", "model": "m"}, {"name": "b", "model": "m"}]}',
        now(), now());
INSERT INTO arm_stats (workload_id, arm, stats, updated_at)
SELECT id, arm, '{}', now() FROM workloads, (VALUES ('a'), ('b')) AS arms(arm);
INSERT INTO decisions (id, workload_id, arm, propensity, created_at)
SELECT md5(i::text)::uuid::text, 1, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, random(),
       now() - i * interval '1 second'
FROM generate_series(1, %(rows)s) AS i;
INSERT INTO feedback (decision_id, workload_id, arm, quality, cost_usd, latency_ms,
                      input_tokens, output_tokens, error, created_at)
SELECT id, 1, arm, random(), random() / 100, random() * 1000, (random() * 900)::int,
       (random() * 900)::int, random() < 0.05, created_at
FROM decisions;
"""


def _psycopg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(_psycopg(url)) as conn:
        counts = {}
        for name in TABLES:
            row = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
            counts[name] = int(row[0]) if row else -1
        return counts


def run(options: Options) -> list[Target]:
    rows = QUICK_ROWS if options.quick else ROWS
    with postgres_server(tools.require, fsync=True) as pg, tempfile.TemporaryDirectory() as work:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            for name in ("bench_source", "bench_target"):
                conn.execute(f"CREATE DATABASE {name}")
        source, target = pg.url("bench_source"), pg.url("bench_target")
        migrations.upgrade(source)
        migrations.upgrade(target)
        started = time.perf_counter()
        with psycopg.connect(_psycopg(source)) as conn:
            conn.execute(FILL.replace("%(rows)s", str(rows)).encode())
        fill_s = time.perf_counter() - started

        settings = load_settings(data_dir=Path(work), database={"url": source})
        started = time.perf_counter()
        path, _ = core.create(settings, directory=Path(work) / "backups")
        create_s = time.perf_counter() - started
        started = time.perf_counter()
        core.verify(path)
        verify_s = time.perf_counter() - started
        started = time.perf_counter()
        core.restore(settings, path, database_url=target)
        restore_s = time.perf_counter() - started
        size = path.stat().st_size
        before, after = _counts(source), _counts(target)

    print(
        table(
            ["step", "seconds", "note"],
            [
                ["fill (INSERT … SELECT)", fill_s, "not part of the backup"],
                ["backup create", create_s, f"archive {size / 1e6:.1f} MB ({size:,} bytes)"],
                ["backup verify", verify_s, "reads the archive, no database"],
                ["backup restore", restore_s, "into an empty database, one transaction"],
            ],
        )
    )
    print(f"row counts: source {before}, restored {after}")
    return [
        Target(
            "backup",
            f"{rows:,} feedback rows: backup, verify, restore; restored counts equal",
            f"create {create_s:.1f} s, verify {verify_s:.1f} s, restore {restore_s:.1f} s, "
            f"archive {size / 1e6:.1f} MB",
            before == after and after["feedback"] == rows,
        )
    ]
