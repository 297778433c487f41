"""Every name the service uses in Redis, all under one prefix: a Redis shared with other
applications keeps them apart, and a backup (backup/redis_state.py) takes exactly the
service's keys."""

from __future__ import annotations

from typing import Final

PREFIX: Final = "llm-optimizer:"
# Rate-limit counters (ratelimit.py): ``<RATE_LIMIT_PREFIX><key id>:<minute>``, expiring.
RATE_LIMIT_PREFIX: Final = f"{PREFIX}ratelimit:"
# The pub/sub channel of policy changes (redis_bus.py); a channel stores nothing.
POLICY_CHANNEL: Final = f"{PREFIX}policies"
