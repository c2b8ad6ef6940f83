"""tesson demo-server: a tiny HTTP server that says which shard, host and CPUs answered.

Every GET (any path) gets a JSON object::

    {"group": "web", "shard": 0, "hostname": "3f2a...", "cpus": "0-1"}

``group`` and ``shard`` come from the ``TESSON_GROUP`` and ``TESSON_UID`` variables tesson sets in
every shard (null outside a group); ``cpus`` is ``Cpus_allowed_list`` from ``/proc/self/status``, so
the answer proves the pinning the kernel really applies, not the one tesson asked for. The tesson
image carries it, so a demo group or an end-to-end test needs no second image.

Standard library only; one thread per connection; SIGTERM stops it at once (``docker stop`` does
not wait for its timeout).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
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
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self) -> None:  # http.server's naming
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, format: str, *args) -> None:
        pass  # no access log: it would cost more than the answer


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
        server.server_close()
    return 0
