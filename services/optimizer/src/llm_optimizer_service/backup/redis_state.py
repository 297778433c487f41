"""The Redis part: the keys the service owns, exported with DUMP/PTTL and restored with RESTORE.

The service keeps its Redis keys under :data:`~llm_optimizer_service.redis_keys.PREFIX`: today
the rate-limit counters (``redis.rate_limit_per_minute`` > 0), which expire within two minutes;
policy changes go over pub/sub, which stores nothing. The part is empty but well-formed when no
Redis is configured or nothing is under the prefix.
One JSON object per line: ``{"key": b64, "ttl_ms": int (-1 = none), "value": b64}``. Restore
replaces the prefix's keys in one MULTI/EXEC transaction.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from llm_optimizer_service.backup.archive import BackupError
from llm_optimizer_service.redis_keys import PREFIX

PART = "redis.jsonl"


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def _keys(client: Any) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{PREFIX}*", count=1000))


def export(url: str | None, destination: Path) -> dict[str, Any]:
    """Write the part; returns what the manifest records about it."""
    if url is None:
        destination.write_bytes(b"")
        return {"configured": False, "keys": 0, "prefix": PREFIX}
    import redis

    client = _client(url)
    count = 0
    try:
        with destination.open("w") as handle:
            for key in _keys(client):
                value = client.dump(key)
                if value is None:  # expired meanwhile
                    continue
                ttl = int(client.pttl(key))
                line = {
                    "key": base64.b64encode(key).decode(),
                    "ttl_ms": ttl if ttl > 0 else -1,
                    "value": base64.b64encode(value).decode(),
                }
                handle.write(json.dumps(line) + "\n")
                count += 1
    except redis.RedisError as exc:
        raise BackupError(f"reading Redis failed: {exc}; is redis.url right and Redis up?") from exc
    finally:
        client.close()
    return {"configured": True, "keys": count, "prefix": PREFIX}


def read_part(path: Path) -> list[tuple[bytes, int, bytes]]:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            item = json.loads(line)
            entries.append(
                (
                    base64.b64decode(item["key"], validate=True),
                    int(item["ttl_ms"]),
                    base64.b64decode(item["value"], validate=True),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{PART} line {number} is malformed: {exc}") from exc
    return entries


def existing_keys(url: str) -> int:
    import redis

    client = _client(url)
    try:
        return len(_keys(client))
    except redis.RedisError as exc:
        raise BackupError(f"cannot reach Redis to restore into it: {exc}") from exc
    finally:
        client.close()


def restore(url: str, entries: list[tuple[bytes, int, bytes]]) -> int:
    """Replace the prefix's keys by ``entries`` in one transaction; returns keys written."""
    import redis

    client = _client(url)
    try:
        old = _keys(client)
        pipe = client.pipeline(transaction=True)
        if old:
            pipe.delete(*old)
        for key, ttl, value in entries:
            pipe.restore(key, max(ttl, 0), value, replace=True)
        pipe.execute()
    except redis.RedisError as exc:
        raise BackupError(
            f"restoring Redis failed: {exc}; the database is restored, run the restore "
            "again for Redis"
        ) from exc
    finally:
        client.close()
    return len(entries)
