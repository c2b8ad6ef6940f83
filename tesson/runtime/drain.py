"""Draining a shard that left the front door: wait until its open connections are gone, or for
``--drain-timeout``.

Where the daemon is local and this process sees the host's /proc (the CLI on the host), the
shard's connections are counted in its network namespace (``/proc/PID/net/tcp``, ``tcp6``): those
accepted on a port it listens on that may still carry a request (:data:`OPEN_STATES`). The drain
ends as soon as none is left. Elsewhere (a remote daemon, tesson in its own container) they
cannot be seen and the drain waits the whole timeout.

Before it counts, the drain waits the front door's own lag (``floor``: an nginx reload or an IPVS
weight takes effect within :data:`DRAIN_FLOOR`; the kernel door's table is rewritten before its
hook returns, so it has none): a connection the door still sent meanwhile is then counted.

What a drain cannot end: a kept-alive connection (wrk, a connection pool) stays open as long as
its client and server keep it, and an L4 door (kernel, IPVS, nginx's stream proxy) keeps it on
the shard it was opened to. Such a connection moves only when the server closes it, which a
well-written shard does on SIGTERM (the demo server answers with ``Connection: close`` and closes
idle ones): the stop after the drain. Under keep-alive load a drain therefore lasts its timeout,
and ``--drain-timeout`` is what bounds it.
"""

from __future__ import annotations

import time
from typing import Any

from tesson import log
from tesson.docker_client import is_remote

DRAIN_TIMEOUT = 3.0  # seconds a shard out of the door gets for its open connections (--drain-timeout)
DRAIN_FLOOR = 0.5  # a door's change (an nginx reload) takes effect within this, unless it says otherwise
LISTEN = "0A"
# /proc/net/tcp states of an accepted connection that may still carry a request: ESTABLISHED,
# SYN_RECV (a handshake the door sent before it changed) and CLOSE_WAIT (the client closed its
# side; the server may still be answering). The others have no request left to answer.
OPEN_STATES = {"01": "ESTABLISHED", "03": "SYN_RECV", "08": "CLOSE_WAIT"}
POLL = 0.05  # seconds between two counts


def open_connections(pid: int, root: str = "/proc") -> int | None:
    """Connections accepted by a container's listening sockets that are still open: the entries of
    its network namespace (``/proc/PID/net/tcp`` and ``tcp6``) in one of :data:`OPEN_STATES` whose
    local port is one it listens on (its outgoing connections do not count). None when they cannot
    be read (a remote daemon, tesson in a container without the host's /proc)."""
    rows = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{root}/{pid}/net/{name}", encoding="ascii") as f:
                rows += [line.split() for line in f.readlines()[1:]]
        except OSError:
            if name == "tcp":
                return None
    listening = {r[1].rsplit(":", 1)[1] for r in rows if len(r) > 3 and r[3] == LISTEN}
    return sum(1 for r in rows if len(r) > 3 and r[3] in OPEN_STATES and r[1].rsplit(":", 1)[1] in listening)


def _is_container(pid: int, cid: str) -> bool:
    """Whether host pid ``pid`` is in container ``cid`` as this process sees it (tesson in a
    container of its own sees another /proc: then the connections cannot be counted)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return cid in f.read()
    except OSError:
        return False


def drain(client: Any, cid: str, timeout: float, floor: float = DRAIN_FLOOR) -> float:
    """Give a shard out of the front door up to ``timeout`` seconds for its open connections to end;
    returns as soon as none is left (after the door's lag ``floor``), when that can be seen (a
    local daemon), else after ``timeout``. Returns the seconds it took."""
    began = time.monotonic()
    if timeout <= 0:
        return 0.0
    deadline = began + timeout
    pid = 0
    if not is_remote():
        try:
            pid = int(((client.inspect_container(cid).get("State") or {}).get("Pid")) or 0)
        except Exception:
            pid = 0
    visible = bool(pid) and _is_container(pid, cid)
    lag = min(floor, timeout) - (time.monotonic() - began)
    if lag > 0:
        time.sleep(lag)
    while time.monotonic() < deadline:
        left = open_connections(pid) if visible else None
        if left == 0:
            return time.monotonic() - began
        time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
    log.info("drain timed out", id=cid[:12], seconds=timeout, connections=open_connections(pid) if visible else "unseen")
    return time.monotonic() - began
