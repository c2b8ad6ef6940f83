"""The groups on the daemon, as claims on CPUs (tesson.holdings), read in one container listing.

``run --dry-run`` and ``topology --groups`` pay for this on every call, so on the local socket (no
``DOCKER_HOST``, or a ``unix://`` one) the listing is one HTTP request made with the standard library
(``http.client`` over the Unix socket: importing docker-py and requests costs more than the whole
plan). Any other daemon goes through docker-py as usual.
"""

from __future__ import annotations

import json
import os
import socket

from tesson import labels as L

TIMEOUT = 10.0


class _UnixConnection:
    """The least of an HTTP/1.1 client over a Unix socket (one GET, the whole answer)."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout = path, timeout

    def get(self, target: str) -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPConnection("localhost", timeout=self.timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            conn.sock = sock
            conn.request("GET", target, headers={"Host": "docker"})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


def _socket_path() -> str | None:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return None


def list_containers(client=None) -> tuple[list[dict] | None, str]:
    """Every container carrying ``io.tesson.group`` (summaries, as ``docker ps -a``), and ``""``; or
    ``(None, why)`` when the daemon cannot be reached."""
    filters = {"label": [L.GROUP]}
    if client is None:
        path = _socket_path()
        if path is not None:
            from urllib.parse import quote

            try:
                status, body = _UnixConnection(path, TIMEOUT).get(
                    "/containers/json?all=1&filters=" + quote(json.dumps(filters)))
            except OSError as e:
                return None, f"{path}: {e.strerror or e}"
            if status != 200:
                return None, f"{path}: the daemon answered {status}"
            return json.loads(body), ""
        from tesson import docker_client
        from tesson.errors import TessonError

        try:
            client = docker_client.connect()
        except TessonError as e:
            return None, str(e)
    try:
        return client.containers(all=True, filters=filters), ""
    except Exception as e:
        from tesson.docker_client import explain

        return None, explain(e)


def load(topo, client=None):
    """``(claims, why)``: the claims of every group on the daemon (tesson.holdings.Claim), or
    ``(None, why)`` when no daemon is reachable."""
    from tesson import holdings

    found, why = list_containers(client)
    if found is None:
        return None, why
    return holdings.claims_from_containers(found, topo), ""
