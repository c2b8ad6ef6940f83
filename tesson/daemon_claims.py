"""The groups on the daemon, as claims on CPUs (tesson.holdings), read in one container listing.

``run --dry-run`` and ``topology --groups`` pay for this on every call, so on the local socket (no
``DOCKER_HOST``, or a ``unix://`` one) the listing is one HTTP request made with the standard library
(a plain socket: importing docker-py and requests, or even http.client, costs more than the whole
plan). Any other daemon goes through docker-py as usual.
"""

from __future__ import annotations

import json
import os
import socket

from tesson import labels as L

TIMEOUT = 10.0


def _get(path: str, target: str, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """One ``GET target`` over the Unix socket at ``path``, HTTP/1.0 (the daemon then closes the
    connection after the body and never chunks it): ``(status, body)``. Plain sockets: importing
    ``http.client`` alone costs more than the whole plan of a 256-CPU machine."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"not an HTTP answer from {path}") from None
    return status, body


def _quote(text: str) -> str:
    """Percent-encode a query value (what urllib.parse.quote(text, safe="") does, for ASCII)."""
    keep = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode())


def local_socket() -> str | None:
    """The daemon's Unix socket when it is local (no ``DOCKER_HOST``, or a ``unix://`` one), else None."""
    return _socket_path()


def _socket_path() -> str | None:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return None


def get_json(target: str, timeout: float = TIMEOUT):
    """``GET target`` (an Engine API path and query) on the local daemon's socket, decoded; None when
    the daemon is not on a local socket (use docker-py then); OSError when it cannot be reached or
    does not answer 200. ``query(...)`` builds the query string."""
    path = _socket_path()
    if path is None:
        return None
    status, body = _get(path, target, timeout)
    if status != 200:
        raise OSError(f"{path}: the daemon answered {status} to GET {target.split('?')[0]}")
    return json.loads(body)


def query(**params: object) -> str:
    """``?k=v&...`` with each value percent-encoded (dicts and lists as JSON, as the Engine API wants)."""
    parts = [f"{k}={_quote(v if isinstance(v, str) else json.dumps(v))}" for k, v in params.items()]
    return "?" + "&".join(parts) if parts else ""


def list_containers(client=None) -> tuple[list[dict] | None, str]:
    """Every container carrying ``io.tesson.group`` (summaries, as ``docker ps -a``), and ``""``; or
    ``(None, why)`` when the daemon cannot be reached."""
    filters = {"label": [L.GROUP]}
    if client is None:
        path = _socket_path()
        if path is not None:
            try:
                status, body = _get(path, "/containers/json?all=1&filters=" + _quote(json.dumps(filters)))
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
