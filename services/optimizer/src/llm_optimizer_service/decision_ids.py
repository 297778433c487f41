"""Decision ids: UUIDv7 (RFC 9562, section 5.7), whose first 48 bits are the Unix time in
milliseconds at which the id was minted.

Feedback for a decision id that is not in the database yet may be early — another replica's
batch writer writes its decisions within a flush interval — or may name a decision that never
existed. The timestamp tells them apart: only an id minted moments ago is worth waiting for
(``runtime.py``); an older one, or one that is no UUIDv7 at all, is answered at once.
(Python 3.14 has ``uuid.uuid7``; this service supports 3.11, so the layout is written out here.)
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62


def new_decision_id() -> str:
    """A fresh UUIDv7: 48 bits of milliseconds, then 74 random bits."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    rand_a = random_bits >> 68  # 12 bits
    rand_b = random_bits & ((1 << 62) - 1)  # 62 bits
    value = (millis & ((1 << 48) - 1)) << 80 | _VERSION_7 | rand_a << 64 | _VARIANT_RFC | rand_b
    digits = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without its checks
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def minted_at(decision_id: str) -> float | None:
    """When a UUIDv7 decision id was minted (Unix seconds); None for anything else."""
    try:
        parsed = uuid.UUID(decision_id)
    except ValueError:
        return None
    if parsed.version != 7 or parsed.variant != uuid.RFC_4122:
        return None
    return (parsed.int >> 80) / 1000.0
