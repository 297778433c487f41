"""The test-only stall hook (tests/_support/stall_hook) on a real ``serve``: SIGUSR2 blocks the
event loop for the given seconds, on both loops the service runs on, and the service answers
again afterwards. The systemd watchdog test relies on it; the service has no knob for it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests._support.service import RunningService
from tests._support.stall import stall_env

STALL_SECONDS = 3.0

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_sigusr2_blocks_the_event_loop_then_it_serves_again(
    service_factory: Callable[..., RunningService], loop: str
) -> None:
    service = service_factory(env={"LLM_OPTIMIZER_SERVER__LOOP": loop, **stall_env(STALL_SECONDS)})
    live = f"{service.http_url}/health/live"
    assert httpx.get(live, timeout=5).status_code == 200

    service.process.send_signal(signal.SIGUSR2)
    time.sleep(0.2)  # let the handler start
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        httpx.get(live, timeout=1)  # the loop is blocked: no answer at all
    response = httpx.get(live, timeout=STALL_SECONDS * 3)
    waited = time.monotonic() - started
    print(f"{loop}: blocked, then answered after {waited:.1f} s")

    assert response.status_code == 200
    assert waited >= STALL_SECONDS * 0.75
    assert service.process.poll() is None  # stalled, not dead
    assert "test stall hook: blocking the main thread" in service.logs()


def test_without_the_hook_sigusr2_is_not_a_stall_trigger(
    service_factory: Callable[..., RunningService],
) -> None:
    """Nothing in the service handles SIGUSR2: its default action ends the process."""
    service = service_factory()
    service.process.send_signal(signal.SIGUSR2)
    assert service.process.wait(10) == -signal.SIGUSR2
