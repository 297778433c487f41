"""Seed the service's storage and take content checksums of every table (and the Redis keys)."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from llm_optimizer_service.redis_keys import PREFIX
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.storage.models import Base
from llm_optimizer_service.storage.repository import FeedbackInput, PendingDecision, Repository
from sqlalchemy import select

SPEC: dict[str, Any] = {
    "arms": [
        {"name": "small", "model": "gpt-small", "params": {"temperature": 0.2}},
        {"name": "large", "model": "gpt-large", "price": {"input_per_1k": 1, "output_per_1k": 2}},
    ],
    "objective": {"quality_weight": 1, "cost_weight": 0.5, "latency_weight": 0},
    "constraints": {},
    "strategy": "thompson",
}

ESTIMATE = {"value": 0.5, "ci95": [0.4, 0.6]}
EVALUATION: dict[str, Any] = {
    "candidate": {"arm": "large"},
    "description": "arm large fixed (what promoting it would do)",
    "probabilities": {"large": 1.0},
    "outcomes": 30,
    "limit": 10000,
    "effective_sample_size": 14.5,
    **{name: ESTIMATE for name in ("ips", "snips", "dr", "logged")},
    "verdict": "inconclusive",
}


def seed(url: str, *, workload: str = "chat", decisions: int = 40, seed: int = 1) -> None:
    """Migrate, then a workload with decisions, feedback on most of them, an evaluation, a
    promote + rollback."""
    migrations.upgrade(url)
    rng = random.Random(f"{seed}-{workload}")
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        repo = Repository(engine)
        record = repo.create_workload(workload, SPEC, ["small", "large"])
        start = datetime(2026, 1, 1, tzinfo=UTC)
        batch = [
            PendingDecision(
                id=str(uuid.UUID(int=rng.getrandbits(128))),
                workload_id=record.id,
                workload=workload,
                arm=rng.choice(["small", "large"]),
                propensity=round(rng.random(), 6),
                created_at=start + timedelta(seconds=i),
            )
            for i in range(decisions)
        ]
        repo.write_decisions(batch)
        repo.record_feedback(
            [
                FeedbackInput(
                    decision_id=d.id,
                    quality=round(rng.random(), 4),
                    cost_usd=round(rng.random() / 100, 6),
                    latency_ms=round(rng.uniform(50, 900), 3),
                    input_tokens=rng.randint(10, 900),
                    output_tokens=rng.randint(10, 900),
                    error=rng.random() < 0.05,
                )
                for d in batch[: decisions * 3 // 4]
            ]
        )
        repo.store_evaluation(record.id, "evaluate", "dave", EVALUATION, keep=10)
        repo.promote(workload, "large", 10.0, "alice")
        repo.promote(workload, "small", None, "bob")
        repo.rollback(workload, "carol")
    finally:
        engine.dispose()


def _value(value: object) -> object:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    return value


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Per table: row count and sha256 of all rows in primary-key order (types normalised)."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    result: dict[str, tuple[int, str]] = {}
    try:
        with engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                rows = connection.execute(select(table).order_by(*table.primary_key.columns)).all()
                digest = hashlib.sha256()
                for row in rows:
                    data = {key: _value(value) for key, value in row._mapping.items()}
                    digest.update(json.dumps(data, sort_keys=True, default=str).encode())
                result[table.name] = (len(rows), digest.hexdigest())
        result["schema"] = (0, str(migrations.current_revision(engine)))
    finally:
        engine.dispose()
    return result


def seed_redis(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        client.set(f"{PREFIX}idempotency:abc", "1", ex=3600)
        client.hset(f"{PREFIX}ratelimit:key1", mapping={"tokens": "7", "at": "123"})
        client.rpush(f"{PREFIX}queue", "a", "b", "c")
        client.set("someone-else:key", "not ours")


def redis_snapshot(url: str) -> dict[bytes, tuple[bytes, bool]]:
    """The service's keys: DUMP payload and whether a TTL is set."""
    import redis

    with redis.Redis.from_url(url) as client:
        keys = sorted(client.scan_iter(match=f"{PREFIX}*"))
        return {key: (client.dump(key), client.pttl(key) > 0) for key in keys}
