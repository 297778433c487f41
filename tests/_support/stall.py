"""Provoke a stalled event loop in a real service process (test only; the service has no knob
for it): the environment that loads ``stall_hook/sitecustomize.py`` into the process, after
which ``SIGUSR2`` blocks its main thread, and so its event loop, for the given seconds."""

from __future__ import annotations

from pathlib import Path

STALL_HOOK_DIR = Path(__file__).parent / "stall_hook"
STALL_SECONDS_ENV = "TEST_STALL_SECONDS"


def stall_env(seconds: float, hook_dir: Path | str = STALL_HOOK_DIR) -> dict[str, str]:
    """Variables that arm the hook: ``hook_dir`` (where ``sitecustomize.py`` is, e.g. a copy of
    :data:`STALL_HOOK_DIR` on another host) as ``PYTHONPATH``, and the stall length."""
    if seconds <= 0:
        raise ValueError(f"stall seconds must be positive, got {seconds}")
    return {"PYTHONPATH": str(hook_dir), STALL_SECONDS_ENV: f"{seconds:g}"}
