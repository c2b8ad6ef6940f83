"""Whether a shard listens yet: the kernel front door admits a shard without a Docker healthcheck
into its rotation only once it accepts a TCP connection on every TCP port the group publishes.

Why: DNAT sends a new connection to one address and that is final. nginx, finding a shard's port
closed, tries another upstream; the kernel cannot, so a shard put in the map the moment Docker
says it runs (its ``start`` event) costs a refused connection to every N-th client until its
server listens, which an app that loads for a few seconds does not do at once.

The check: a TCP connect from the agent (host network) to the shard's address on the group's
network and the door's container port, exactly where the DNAT rule would send a client; closed
at once, no byte sent (the app sees a connection open and close, as with a ``tcpSocket`` probe of
Kubernetes). Every TCP door's port must accept, each once (a port found accepting is not tried
again). UDP has no handshake to check: a group whose doors are all UDP admits its shards as they
start, as before. A shard with a Docker healthcheck is not probed: its health decides (``healthy``
in, ``starting`` and ``unhealthy`` out), as before.

Who checks (:mod:`tesson.commands.kernel_agent`): the running agent gives every running shard that
waits its own :class:`Prober` thread, so a shard's wait never holds up the event loop nor another
shard (a scale starts several at once); an exec'd ``sync`` and the agent's start try every waiting
shard once (:func:`probe_once`, in parallel) before they write. All record the containers found
listening in ``/run/tesson-agent/listening`` (:mod:`kernel_table`), which every write of the table
reads: a container found listening stays admitted until it dies (its next start is checked again).

Hazards and limits:

- Checked at admission, not after: a shard whose server stops accepting while its container runs
  stays in the map (a Docker healthcheck covers that; nginx's passive checks are nginx's).
- The bound: a prober polls every :data:`INTERVAL` seconds for :data:`BOUND` seconds; past it the
  shard stays *out* (a door sending clients to a closed port is what this avoids), one warning goes
  to the agent's log, and it is checked every :data:`SLOW` seconds from then on, so a very slow
  server still gets in once it listens. ``ps`` says ``not listening yet`` all along; a ``scale`` or
  ``update`` waiting for it (``add_backends``) gives up at the bound.
- A connect to an address nobody has (a container that just died) waits for ARP to fail: each
  connect gives up after :data:`CONNECT_TIMEOUT` seconds.
- Light: only ``socket``, ``threading`` and ``time`` (the agent avoids docker-py for speed).
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterable

from tesson import log
from tesson.frontend import kernel_rules as K

INTERVAL = 0.1  # seconds between a waiting shard's checks
BOUND = 30.0  # seconds of checks every INTERVAL; then every SLOW, the shard still out
SLOW = 2.0
CONNECT_TIMEOUT = 0.5


def tcp_ports(doors: Iterable[K.Door]) -> list[int]:
    """The container ports to check: those of the TCP doors, once each (none: nothing to check)."""
    return sorted({d.port for d in doors if d.proto == "tcp"})


def accepts(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether ``address:port`` completes a TCP handshake (closed again at once)."""
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def listens(address: str, ports: Iterable[int], timeout: float = CONNECT_TIMEOUT) -> bool:
    return all(accepts(address, p, timeout) for p in ports)


def probe_once(targets: dict[str, str], ports: list[int], timeout: float = CONNECT_TIMEOUT) -> set[str]:
    """Which of ``targets`` (container id -> address) accept on every port now: one try each, all
    at once (one thread per target; a handful at most in practice)."""
    if not ports:
        return set(targets)
    found: set[str] = set()
    lock = threading.Lock()

    def one(cid: str, address: str) -> None:
        if listens(address, ports, timeout):
            with lock:
                found.add(cid)

    threads = [threading.Thread(target=one, args=item, daemon=True) for item in targets.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * len(ports) + 1.0)
    with lock:
        return set(found)


HEARD = "listening"  # what a Prober puts on the agent's event queue: (HEARD, container id)


class Prober(threading.Thread):
    """Checks one waiting shard until it listens (then puts ``(HEARD, cid)`` on ``q`` and
    ends, :attr:`ok` set) or until :meth:`cancel` (it died, or no longer waits)."""

    def __init__(self, cid: str, name: str, address: str, ports: list[int], q: queue.Queue) -> None:
        super().__init__(daemon=True, name=f"probe-{name}")
        self.cid, self.shard, self.address, self.ports, self.q = cid, name, address, list(ports), q
        self.ok = False
        self.cancelled = threading.Event()
        self.began = time.monotonic()

    def cancel(self) -> None:
        self.cancelled.set()

    def run(self) -> None:
        pending, warned = list(self.ports), False
        while not self.cancelled.is_set():
            pending = [p for p in pending if not accepts(self.address, p)]
            if not pending:
                self.ok = True
                self.q.put((HEARD, self.cid))
                log.info("shard listens: admitted", shard=self.shard, after=round(time.monotonic() - self.began, 3))
                return
            waited = time.monotonic() - self.began
            if waited >= BOUND and not warned:
                warned = True
                log.warning(f"shard not listening after {BOUND:.0f}s: kept out of rotation, checked every {SLOW:.0f}s",
                            shard=self.shard, address=self.address, ports=pending)
            self.cancelled.wait(INTERVAL if waited < BOUND else SLOW)
