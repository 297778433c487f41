"""Two parallel ``db upgrade`` runs against one PostgreSQL: they queue on the advisory lock,
both exit 0, and the migration is applied exactly once."""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.migrations import ADVISORY_LOCK_KEY

from tests._support.service import service_command


def _waiting(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    return int(row[0]) if row else 0


def test_parallel_upgrades_wait_for_each_other(postgres_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
    env["LLM_OPTIMIZER_DATABASE__URL"] = postgres_url
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as holder:
        # Hold the migrations' lock ourselves, so both runs must queue behind it.
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        runs = [
            subprocess.Popen(
                [*service_command(), "db", "upgrade", "--to", "head"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + 60
            while _waiting(holder) < 2:
                assert all(run.poll() is None for run in runs), "an upgrade did not wait"
                assert time.monotonic() < deadline, "the upgrades never reached the lock"
                time.sleep(0.05)
            row = holder.execute("SELECT to_regclass('workloads')").fetchone()
            assert row == (None,), "a migration ran while the lock was held"
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        outputs = [run.communicate(timeout=60)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    applied = [out for out in outputs if "Running upgrade  -> 0001" in out]
    assert len(applied) == 1, outputs
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(migrations.head_revision(),)]
