"""HTTP/1.1 for :mod:`tesson.engine_lite`: one request on a fresh connection to a unix socket, its
answer read as far as its framing says, with the standard library's socket core alone.

The algorithm: the request always says ``Connection: close`` (an ``Upgrade`` request, the exec
attach that hijacks the connection, says ``Connection: Upgrade``). The answer's head is read up to
its blank line; then the body by its framing: ``Transfer-Encoding: chunked`` (Go's server chunks any
body it did not measure before sending) up to the final zero-size chunk (its trailers dropped), else
exactly ``Content-Length`` bytes, else (a ``101`` upgrade, an unframed body) until the daemon closes.
Reading stops when the framing says the body is complete: a daemon (or a proxy) that keeps the
connection open after a complete answer costs nothing. A connection per request costs a connect()
on a local socket (tens of microseconds) and makes a client safe to share between threads.

A request can also be sent now and its answer read later (:func:`send`, :class:`Pending`), so the
daemon's work overlaps the caller's: ``run --dry-run`` asks for the listing of the groups before it
reads the topology.

Hazards: an answer cut short (the daemon restarted, a proxy dropped it) must not pass for a whole
one, or ``logs`` prints a truncated log silently and a JSON reader fails on half a document:
a chunked body whose final chunk never came, or a body shorter than its ``Content-Length``, raises
:class:`ConnectionLost` ("the daemon's answer was cut short"), as docker-py (urllib3) raises.
"""

from __future__ import annotations

import _socket  # socket's C core: the socket module adds enums, files and sendfile, none used here, for ~3-5 ms

CUT = "the daemon's answer was cut short"
RECV = 1 << 16


class ConnectionLost(ConnectionError):
    """The daemon's socket could not be reached, or the connection broke or its answer was cut
    short or unreadable (the cause, when there is one, is the socket's error)."""


class _Cut(Exception):
    """The stream ended before the framing said the answer was complete."""


class Reader:
    """Bytes from ``recv(n)`` (b"" at the end of the stream) taken apart by line and by length."""

    def __init__(self, recv) -> None:
        self.recv, self.buf = recv, bytearray()

    def _more(self) -> bool:
        got = self.recv(RECV)
        self.buf += got
        return bool(got)

    def until(self, mark: bytes) -> bytes:
        """The bytes before ``mark`` (consumed with it); _Cut when the stream ends first."""
        start = 0
        while True:
            at = self.buf.find(mark, start)
            if at >= 0:
                out = bytes(self.buf[:at])
                del self.buf[:at + len(mark)]
                return out
            start = max(0, len(self.buf) - len(mark) + 1)
            if not self._more():
                raise _Cut

    def exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self._more():
                raise _Cut
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def chunked(self) -> bytes:
        """A chunked body up to its final chunk (trailers read and dropped)."""
        out = []
        while True:
            line = self.until(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ConnectionLost(f"bad chunk size {line[:20]!r} in the daemon's answer") from None
            if size == 0:
                break
            out.append(self.exact(size))
            if self.until(b"\r\n"):
                raise ConnectionLost("a chunk longer than its size in the daemon's answer")
        try:
            while self.until(b"\r\n"):  # trailers, up to the blank line
                pass
        except _Cut:  # the body is whole: a trailer section cut short loses nothing we read
            pass
        return b"".join(out)


def dechunk(body: bytes) -> bytes:
    """A whole ``Transfer-Encoding: chunked`` body decoded; ConnectionLost when it is cut short."""
    parts = [body]
    try:
        return Reader(lambda _n: parts.pop() if parts else b"").chunked()
    except _Cut:
        raise ConnectionLost(CUT) from None


def read_answer(reader: Reader, where: str) -> tuple[int, dict, bytes]:
    """``(status, headers (lower-case names), body)`` of one answer, read as its framing says."""
    try:
        head = reader.until(b"\r\n\r\n")
    except _Cut:
        got = bytes(reader.buf)
        if got[:5] == b"HTTP/":
            raise ConnectionLost(f"{where}: {CUT}") from None
        raise ConnectionLost(f"{where}: not an HTTP answer ({got[:40]!r})") from None
    status_line, *fields = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionLost(f"{where}: not an HTTP answer ({head[:40]!r})")
    status, found = int(parts[1]), {}
    for field in fields:
        name, _, value = field.partition(":")
        found[name.strip().lower()] = value.strip()
    try:
        if status in (204, 304) or (100 <= status < 200 and status != 101):
            body = b""
        elif status != 101 and "chunked" in found.get("transfer-encoding", "").lower():
            body = reader.chunked()
        elif status != 101 and found.get("content-length", "").isdigit():
            body = reader.exact(int(found["content-length"]))
        else:  # an upgraded (hijacked) stream, or a body without framing: it ends when the daemon closes
            body = reader.rest()
    except _Cut:
        raise ConnectionLost(f"{where}: {CUT}") from None
    return status, found, body


class Pending:
    """A request sent whose answer is not read yet: the daemon works on it (on another CPU) while the
    caller does something else, and :meth:`answer` reads it. A Pending holds its connection until
    :meth:`answer` or :meth:`close`."""

    def __init__(self, sock, path: str) -> None:
        self.sock, self.path = sock, path

    def answer(self) -> tuple[int, dict, bytes]:
        """``(status, headers, body)`` as :func:`request` returns them (ConnectionLost alike); the
        connection is closed after."""
        try:
            return read_answer(Reader(self.sock.recv), self.path)
        except ConnectionLost:
            raise
        except OSError as e:
            raise ConnectionLost(f"{self.path}: {e.strerror or e}") from e
        finally:
            self.close()

    def close(self) -> None:
        self.sock.close()


def send(path: str, timeout: float, method: str, target: str, body: bytes | None = None,
         headers: dict | None = None) -> Pending:
    """Send one request to the daemon at the unix socket ``path``, and return without reading its
    answer (:class:`Pending`). ConnectionLost when the socket cannot be reached."""
    given = dict(headers or {})
    upgrade = any(k.lower() == "upgrade" for k in given)
    fields = {"Host": "docker", "User-Agent": "tesson",
              **{k: v for k, v in given.items() if upgrade or k.lower() != "connection"}}
    if not upgrade:
        fields["Connection"] = "close"
    if body is not None:
        fields["Content-Length"] = str(len(body))
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(data)
    except OSError as e:
        sock.close()
        raise ConnectionLost(f"{path}: {e.strerror or e}") from e
    return Pending(sock, path)


def request(path: str, timeout: float, method: str, target: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request to the daemon at the unix socket ``path``, its answer read as its framing says.
    ConnectionLost when the socket cannot be reached, the answer is cut short or is not HTTP."""
    return send(path, timeout, method, target, body, headers).answer()
