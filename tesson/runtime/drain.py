"""Draining a shard that left the front door: wait until its open connections are gone, or for
``--drain-timeout``.

Where the daemon is local and this process sees the host's /proc (the CLI on the host), the
shard's connections are counted in its network namespace (``/proc/PID/net/tcp``, ``tcp6``): the
ESTABLISHED ones on a port it listens on. Elsewhere (a remote daemon, tesson in its own
container) they cannot be seen and the drain waits the whole timeout. Either way the first
:data:`DRAIN_FLOOR` is always waited: the front door's own change (an nginx reload, an IPVS
weight) takes effect within it. A kept-alive client never closes by itself: the shard's own
graceful stop (SIGTERM: answer, ``Connection: close``) ends those, after the drain.
"""

from __future__ import annotations

import time
from typing import Any

from tesson import log
from tesson.docker_client import is_remote

DRAIN_TIMEOUT = 3.0  # seconds a shard out of the door gets for its open connections (--drain-timeout)
DRAIN_FLOOR = 0.5  # the front door's own change (an nginx reload) takes effect within this


def open_connections(pid: int, root: str = "/proc") -> int | None:
    """Connections accepted by a container's listening sockets that are still open: the
    ESTABLISHED entries of its network namespace (``/proc/PID/net/tcp`` and ``tcp6``) whose local
    port is one it listens on. None when they cannot be read (a remote daemon, tesson in a
    container without the host's /proc)."""
    rows = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{root}/{pid}/net/{name}", encoding="ascii") as f:
                rows += [line.split() for line in f.readlines()[1:]]
        except OSError:
            if name == "tcp":
                return None
    listening = {r[1].rsplit(":", 1)[1] for r in rows if len(r) > 3 and r[3] == "0A"}
    return sum(1 for r in rows if len(r) > 3 and r[3] == "01" and r[1].rsplit(":", 1)[1] in listening)


def _is_container(pid: int, cid: str) -> bool:
    """Whether host pid ``pid`` is in container ``cid`` as this process sees it (tesson in a
    container of its own sees another /proc: then the connections cannot be counted)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return cid in f.read()
    except OSError:
        return False


def drain(client: Any, cid: str, timeout: float) -> None:
    """Give a shard out of the front door up to ``timeout`` seconds for its open connections to end
    (at least :data:`DRAIN_FLOOR`, so the door's own change is in effect); returns as soon as none
    is left, when that can be seen (a local daemon), else after ``timeout``."""
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    time.sleep(min(DRAIN_FLOOR, timeout))
    pid = 0
    if not is_remote():
        try:
            pid = int(((client.inspect_container(cid).get("State") or {}).get("Pid")) or 0)
        except Exception:
            pid = 0
    while time.monotonic() < deadline:
        left = open_connections(pid) if pid and _is_container(pid, cid) else None
        if left == 0:
            return
        time.sleep(0.1)
    log.info("drain timed out", id=cid[:12], seconds=timeout)
