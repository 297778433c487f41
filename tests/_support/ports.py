"""Free TCP ports for test and benchmark servers: ops' own helper (no pytest here: the
benchmarks import it)."""

from __future__ import annotations

from ops.core.ports import free_port

__all__ = ["free_port"]
