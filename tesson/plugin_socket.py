"""Stop when the Docker CLI that ran ``docker tesson`` is told to stop.

Docker CLI 25 and later do not pass a SIGTERM/SIGINT on to a plugin (unless its output is a
terminal, whose process group gets the signal anyway): they close the plugin socket instead, a unix
socket whose address they put in ``DOCKER_CLI_PLUGIN_SOCKET`` (on Linux an abstract one,
``@docker_cli_<random>``). A plugin connects to it when it starts, and takes the end of that
connection as its signal to stop. The ``docker tesson`` shim passes the variable into tesson's
container, which runs with ``--network host``: an abstract socket belongs to a network namespace,
and the host's is shared. :func:`watch` connects and, when the connection ends, sends this process
SIGTERM, which tesson handles as it handles the shim's forwarded one (an interrupted run undoes
what it made).

Hazards: where the socket cannot be reached (a remote daemon, a Docker Desktop VM, rootless Docker's
own namespace, an older CLI without the socket) nothing is watched and nothing fails: a signal to
the CLI alone then leaves tesson running, as before. The CLI sends nothing on the socket; any byte
that comes anyway is read and ignored. A connection refused cannot be told apart from "not
reachable", so a CLI that closed its socket before tesson connected is not noticed.
"""

from __future__ import annotations

import os

ENV = "DOCKER_CLI_PLUGIN_SOCKET"


def _address(value: str) -> str:
    """``@name`` (Go's spelling of an abstract socket) as Python spells it: a leading NUL."""
    return "\0" + value[1:] if value.startswith("@") else value


def watch(environ=None) -> bool:
    """Connect to the CLI's plugin socket, if there is one to reach, and SIGTERM this process when
    the CLI closes it. True when watching."""
    value = (os.environ if environ is None else environ).get(ENV, "")
    if not value:
        return False
    import signal
    import socket
    import threading

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1)
        sock.connect(_address(value))
        sock.settimeout(None)
    except OSError:
        sock.close()
        return False

    def wait() -> None:
        try:
            while sock.recv(64):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="plugin-socket", daemon=True).start()
    return True
