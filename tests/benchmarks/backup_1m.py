"""Benchmark (run by hand): back up and restore 1 million feedback rows on PostgreSQL.

    uv run --group test --group infra python -m tests.benchmarks.backup_1m [ROWS]

Starts a throwaway PostgreSQL (tests/_support/postgres.py), fills one workload with ROWS
decisions and ROWS feedback rows (default 1,000,000) with ``INSERT … SELECT generate_series``,
then times ``backup create`` (pg_dump -Fc + archive), ``backup verify`` and ``backup restore``
into a second, empty database, checks the row counts match, and prints the archive size.
Not a CI test: it takes about a minute.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import psycopg
from llm_optimizer_service.backup import core
from llm_optimizer_service.settings import load_settings
from llm_optimizer_service.storage import migrations

from tests._support.postgres import postgres_server

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


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("workloads", "decisions", "feedback")
        }


def main(rows: int) -> None:
    with postgres_server() as pg, tempfile.TemporaryDirectory() as work:
        source, target = pg.create_database(), pg.create_database()
        migrations.upgrade(source)
        migrations.upgrade(target)
        started = time.perf_counter()
        with psycopg.connect(pg.dsn(source.rsplit("/", 1)[1])) as conn:
            conn.execute(FILL.replace("%(rows)s", str(rows)))
        print(f"filled {rows:,} decisions + feedback in {time.perf_counter() - started:.1f} s")

        settings = load_settings(data_dir=Path(work), database={"url": source})
        started = time.perf_counter()
        path, _ = core.create(settings, directory=Path(work) / "backups")
        backup_s = time.perf_counter() - started
        started = time.perf_counter()
        core.verify(path)
        verify_s = time.perf_counter() - started
        started = time.perf_counter()
        core.restore(settings, path, database_url=target)
        restore_s = time.perf_counter() - started

        before = _counts(pg.dsn(source.rsplit("/", 1)[1]))
        after = _counts(pg.dsn(target.rsplit("/", 1)[1]))
        assert before == after, (before, after)
        size = path.stat().st_size
        print(f"backup create  {backup_s:6.1f} s   archive {size / 1e6:.1f} MB ({size:,} bytes)")
        print(f"backup verify  {verify_s:6.1f} s")
        print(f"backup restore {restore_s:6.1f} s   (into an empty database; counts {after})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
