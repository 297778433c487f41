"""TEST ONLY: lets ``SIGUSR2`` stall a service process's event loop, to prove the systemd
watchdog restarts a stalled service (tests/infra/systemd/test_systemd_e2e.py).

Python imports ``sitecustomize`` at start-up from ``sys.path``, so a process started with this
directory on ``PYTHONPATH`` and ``TEST_STALL_SECONDS=N`` (see :mod:`tests._support.stall`) gets a
``SIGUSR2`` handler that sleeps N seconds on the main thread: the thread the service's event loop
runs on. Exactly like a blocking call in a request handler, no request is served and no
watchdog ping is sent meanwhile. The service itself knows nothing of this (the shipped code has
no test-only knob); without the variable this file does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _stall_on_sigusr2(seconds: float) -> None:
    def stall(_signum: int, _frame: object) -> None:
        sys.stderr.write(f"test stall hook: blocking the main thread for {seconds:.1f} s\n")
        sys.stderr.flush()
        time.sleep(seconds)

    signal.signal(signal.SIGUSR2, stall)


_seconds = float(os.environ.get("TEST_STALL_SECONDS") or 0)
if _seconds > 0:
    _stall_on_sigusr2(_seconds)
