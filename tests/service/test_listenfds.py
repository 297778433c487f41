"""Socket activation (LISTEN_FDS): the service takes the sockets a manager hands over, by port,
only when LISTEN_PID names it, and removes the variables so its children do not take them.

The handing over is the local deploy's own wrapper (ops.deploy.local.EXEC_WITH_SOCKETS), so this
also proves that the wrapper puts the sockets at fds 3.. and names the exec-ed process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from ops.deploy import local

PROBE = (
    "import json, os\n"
    "from llm_optimizer_service.listenfds import inherited_sockets, reuses_port\n"
    "sockets = inherited_sockets()\n"
    "print(json.dumps({'ports': sorted(sockets), 'fds': sorted(s.fileno() for s in "
    "sockets.values()), 'reuse': [reuses_port(s) for s in sockets.values()], "
    "'env': sorted(k for k in os.environ if k.startswith('LISTEN_'))}))\n"
)


def _probe(argv: list[str], env: dict[str, str], pass_fds: list[int]) -> dict[str, object]:
    result = subprocess.run(
        argv, env=env, pass_fds=pass_fds, capture_output=True, text=True, check=True, timeout=60
    )
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_handed_over_sockets_are_taken_by_port_and_the_variables_removed() -> None:
    first = local.bind_shared("127.0.0.1", 0)
    second = local.bind_shared("127.0.0.1", 0)
    assert first is not None
    assert second is not None
    with first, second:
        ports = sorted(s.getsockname()[1] for s in (first, second))
        fds = f"{first.fileno()},{second.fileno()}"
        argv = [sys.executable, "-c", local.EXEC_WITH_SOCKETS, fds, "http:metrics"]
        argv += [sys.executable, "-c", PROBE]
        found = _probe(argv, dict(os.environ), [first.fileno(), second.fileno()])
    assert found == {"ports": ports, "fds": [3, 4], "reuse": [True, True], "env": []}


def test_sockets_meant_for_another_process_are_left_alone() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}  # not the child
        found = _probe([sys.executable, "-c", PROBE], env, [])
    assert found == {"ports": [], "fds": [], "reuse": [], "env": []}


def test_a_port_shared_with_so_reuseport_lets_a_second_socket_bind() -> None:
    """What the local redeploy relies on: the deploy's sockets share the port; one bound
    without SO_REUSEPORT (anything else) still cannot take it."""
    first = local.bind_shared("127.0.0.1", 0)
    assert first is not None
    with first:
        port = first.getsockname()[1]
        first.listen()
        second = local.bind_shared("127.0.0.1", port)
        assert second is not None
        second.close()
        assert local.port_in_use("127.0.0.1", port)
