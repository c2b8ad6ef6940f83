"""tesson demo-server: a tiny HTTP server that says which shard, host and CPUs answered.

Every GET (any path) gets a JSON object::

    {"group": "web", "shard": 0, "hostname": "3f2a...", "cpus": "0-1"}

``group`` and ``shard`` come from the ``TESSON_GROUP`` and ``TESSON_UID`` variables tesson sets in
every shard (null outside a group); ``cpus`` is ``Cpus_allowed_list`` from ``/proc/self/status``, so
the answer proves the pinning the kernel really applies, not the one tesson asked for. The tesson
image carries it, so a demo group or an end-to-end test needs no second image.

Standard library only; one thread per connection. SIGTERM stops it gracefully, as a shard that
is being replaced or removed should stop: it stops accepting, answers every request already sent
(and any that arrives on an open connection within :data:`IDLE_GRACE`) with ``Connection:
close``, closes connections that stay idle, and exits once none is left (at most
:data:`SHUTDOWN_GRACE` seconds, within ``docker stop``'s default 10). A keep-alive client such as
wrk then reconnects instead of seeing a reset.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tesson.errors import TessonError


def allowed_cpus(status_path: str = "/proc/self/status") -> str | None:
    """The kernel's ``Cpus_allowed_list`` for this process, e.g. ``"0-3,8"``."""
    try:
        with open(status_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def identity() -> dict:
    uid = os.environ.get("TESSON_UID")
    shard: int | str | None
    try:
        shard = int(uid) if uid is not None else None
    except ValueError:
        shard = uid
    return {
        "group": os.environ.get("TESSON_GROUP"),
        "shard": shard,
        "hostname": socket.gethostname(),
        "cpus": allowed_cpus(),
    }


IDLE_GRACE = 1.0  # after SIGTERM, an idle kept-alive connection is closed once this passed
SHUTDOWN_GRACE = 8.0  # after SIGTERM, the server exits at the latest this much later


class Drain:
    """The server's shutdown state, shared by the connection threads."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.open = 0
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)

    def start(self) -> None:
        with self.lock:
            self.since = time.monotonic()

    @property
    def draining(self) -> bool:
        return self.since is not None

    def idle_expired(self) -> bool:
        return self.since is not None and time.monotonic() - self.since > IDLE_GRACE

    def enter(self) -> None:
        with self.lock:
            self.open += 1

    def leave(self) -> None:
        with self.lock:
            self.open -= 1
            self.idle.notify_all()

    def wait_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.open and time.monotonic() < deadline:
                self.idle.wait(max(0.0, deadline - time.monotonic()))


DRAIN = Drain()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so load generators measure the server, not handshakes
    server_version = "tesson-demo"
    # Headers and body leave in one write (http.server flushes wfile after each request), and
    # without Nagle: otherwise delayed ACKs hold a kept-alive answer back for ~40 ms.
    wbufsize = -1
    disable_nagle_algorithm = True

    def _answer(self, body: bool) -> None:
        # Read the CPUs at every request: they are what the kernel allows now.
        payload = (json.dumps(identity()) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if DRAIN.draining:
            self.send_header("Connection", "close")  # the client reconnects (elsewhere): no reset
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self) -> None:  # http.server's naming
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, format: str, *args) -> None:
        pass  # no access log: it would cost more than the answer

    def handle(self) -> None:
        """http.server's keep-alive loop, but between two requests it waits in slices, so that a
        connection left idle after SIGTERM is closed rather than held until the process ends."""
        DRAIN.enter()
        try:
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection and self._next_request():
                self.handle_one_request()
        finally:
            DRAIN.leave()

    def _buffered(self) -> bool:
        """A request already read into the buffer, or readable without waiting (pipelining)."""
        sock = self.connection
        timeout = sock.gettimeout()
        try:
            sock.setblocking(False)
            return bool(self.rfile.peek(1))  # type: ignore[attr-defined]  # a BufferedReader here
        except OSError:
            return False
        finally:
            sock.settimeout(timeout)

    def _next_request(self) -> bool:
        while True:
            if self._buffered():
                return True
            if DRAIN.idle_expired():
                return False
            readable, _, _ = select.select([self.connection], [], [], 0.25)
            if readable:
                return True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(args) -> int:
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    Server.address_family = family
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as e:
        raise TessonError(f"demo-server: cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    signal.signal(signal.SIGTERM, _stop)
    print(f"demo-server: listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the drain short
        DRAIN.start()
        server.server_close()  # no new connection; those open are answered, then closed
        DRAIN.wait_closed(SHUTDOWN_GRACE)
    return 0
