"""systemd's socket activation protocol (``sd_listen_fds``): listening sockets handed over.

A service manager binds the ports itself and starts the service with those sockets open from
file descriptor 3 on, saying so in the environment (``man sd_listen_fds``):

- ``LISTEN_FDS=N``: sockets at fds 3 .. 3+N-1;
- ``LISTEN_PID``: the process they are meant for (a child that inherited the environment
  ignores them);
- ``LISTEN_FDNAMES`` (optional): ``name:name:…``, for the log only here.

Who does it: systemd's ``llm-optimizer.socket`` (infra/systemd), whose sockets stay open while
the service restarts, so connections arriving meanwhile wait in the kernel's queue instead of
being refused; and ``invoke deploy --target local``, which binds with SO_REUSEPORT so the next
deploy can start a new process beside the running one. The server takes a handed-over socket
for the port it would bind (:func:`llm_optimizer_service.server.listener`) and binds the others
itself. Without these variables nothing changes. The standard library is all it needs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

__all__ = ["SD_LISTEN_FDS_START", "inherited_sockets"]

SD_LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def inherited_sockets(
    environ: MutableMapping[str, str] | None = None,
) -> dict[int, socket.socket]:
    """The sockets handed to this process, by the port each is bound to ({} when none).

    The variables are removed from the environment (as ``sd_listen_fds(1)`` does), so the
    processes the service starts do not take the sockets for theirs; the fds are made
    non-inheritable for the same reason."""
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    for name in _VARIABLES:
        env.pop(name, None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return {}
    sockets: dict[int, socket.socket] = {}
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM or sock.family not in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            sock.detach()  # not ours to use or close
            continue
        sockets[int(sock.getsockname()[1])] = sock
    return sockets


def reuses_port(sock: socket.socket) -> bool:
    """True when the socket was bound with SO_REUSEPORT (a new instance may bind beside it)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return False
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
