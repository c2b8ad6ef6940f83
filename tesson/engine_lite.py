"""The Docker Engine API over the local unix socket with the standard library alone: the read-only
subset of docker-py's low-level ``APIClient`` that ``ls``, ``ps``, ``logs`` (without ``-f``) and
``version`` use, with the same signatures and the same answers (the Engine API's JSON, as
``APIClient`` returns it).

Why: importing docker-py (requests, urllib3, http.client, ssl, email) costs 100-300 ms, several
times what these verbs do with the daemon (a listing, an inspect, a log read: a few ms). Only
``socket`` (its C core, ``_socket``) and ``json`` are used here; even ``http.client`` would import
``email`` (~40 ms).

When: :func:`local_socket` says whether the daemon docker-py would reach is a plain unix socket (no
``DOCKER_HOST``, or a ``unix:///PATH`` one, and no TLS settings); anything else, and every write
verb, keeps docker-py (:func:`tesson.docker_client.connect`). Neither reads Docker contexts or
``-H``: the ``docker tesson`` shim resolves those and mounts the daemon's socket into tesson's
container, where this path then applies. A method outside the subset (``logs(stream=True)``,
anything a frontend asks that is not listed here) is handed to a docker-py ``APIClient`` on the
same socket, made on first use, so a :class:`Client` can stand wherever an ``APIClient`` does.

HTTP: one connection per request, read as far as its framing says and no further; an answer cut
short raises (:mod:`tesson.engine_http`). API version: asked once with ``GET /_ping`` (its
``Api-Version`` header), the version docker-py's ``version="auto"`` settles on, so the answers are
the same documents; not ``/version`` (what docker-py asks), which makes the daemon run ``runc
--version`` and the like (~20 ms here, against under 1 ms), and not a fixed version either: Docker 29
refuses API versions below 1.44, while 20.10 knows none above 1.41. A client made with
``version=UNVERSIONED`` skips the ping and asks unversioned paths, which the daemon serves at its
current version (the one ``/_ping`` names): one round trip less, for a caller whose every ms counts
(tesson.daemon_claims, which falls back to a versioned listing: the Engine API calls unversioned
paths deprecated). The subset: ``ping``, ``version``, ``info``, ``containers``, ``networks``,
``inspect_container``, ``top``, ``logs``, ``exec_create``, ``exec_start``, ``exec_inspect``,
``get_archive``.

Hazards: a non-TTY container's log is a stream of frames, each an 8-byte header (stream id, three
zero bytes, the payload's length, big-endian) and its payload: they are cut apart (docker-py joins
the payloads, stdout and stderr in the order written); a TTY container's log is raw bytes, so
``logs`` inspects the container first, as docker-py does. Errors are raised as docker-py raises
them, in kind: :class:`APIError` (``status_code``, ``explanation``: the daemon's message) for an
HTTP error, :class:`NotFound` for a 404, :class:`ConnectionLost` (an ``OSError`` whose cause is the
socket's) when the daemon cannot be reached, drops the connection, cuts its answer short or answers
what is not JSON where JSON is due; tesson.docker_client's
``explain``/``is_status``/``unless_gone`` know them.
"""

from __future__ import annotations

import json
import os

from tesson import engine_http
from tesson.engine_http import ConnectionLost, dechunk  # noqa: F401 - re-exported (tesson.docker_client, tests)

DEFAULT_SOCKET = "/var/run/docker.sock"  # the daemon's socket when DOCKER_HOST does not say (docker-py's default)
UNVERSIONED = ""  # a Client's version: unversioned paths (the daemon's current version), no /_ping
TIMEOUT = 60.0
TYPE_CHECKING = False  # typing is not imported on the read-only verbs' path
if TYPE_CHECKING:
    from typing import Any

STREAM_HEADER = 8  # a multiplexed frame's header: stream id, 3 zero bytes, payload length (big-endian)
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class APIError(Exception):
    """The daemon answered with an HTTP error: ``status_code``, and its message as ``explanation``."""

    def __init__(self, status_code: int, explanation: str, target: str = "") -> None:
        kind = "Client" if status_code < 500 else "Server"
        super().__init__(f"{status_code} {kind} Error for {target}" + (f' ("{explanation}")' if explanation else ""))
        self.status_code = status_code
        self.explanation = explanation


class NotFound(APIError):
    """A 404: no such container, exec instance or path."""


def local_socket(environ: dict | None = None) -> str | None:
    """The path of the daemon's unix socket when docker-py would reach the daemon through one, with
    nothing but the path: ``DOCKER_HOST`` unset, empty or ``unix:///PATH``, and neither
    ``DOCKER_TLS_VERIFY`` nor ``DOCKER_CERT_PATH`` set. None otherwise (docker-py's turn)."""
    env = os.environ if environ is None else environ
    if env.get("DOCKER_TLS_VERIFY") or env.get("DOCKER_CERT_PATH"):
        return None
    return unix_path(env.get("DOCKER_HOST") or "unix://" + DEFAULT_SOCKET)


def unix_path(host: str) -> str | None:
    """The socket's path in a ``unix:///PATH`` Docker host URL; None for any other URL (a relative
    path, a query, another scheme)."""
    if not host.startswith("unix:///"):
        return None
    path = host[len("unix://"):]
    return path if "?" not in path and "#" not in path else None


def quote(text: str, safe: str = "") -> str:
    """Percent-encode (what ``urllib.parse.quote(text, safe)`` does)."""
    keep = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode())


def query(params: dict) -> str:
    """``?k=v&...`` of the params that are not None (as requests leaves them out), or ``""``."""
    terms = [f"{quote(k)}={quote(v if isinstance(v, str) else str(v))}" for k, v in params.items() if v is not None]
    return "?" + "&".join(terms) if terms else ""


def convert_filters(filters: dict) -> str:
    """List filters as the Engine API takes them: every value a list of strings (booleans as
    ``true``/``false``), JSON (docker-py's own conversion)."""
    out = {}
    for key, value in filters.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, list):
            value = [value]
        out[key] = [v if isinstance(v, str) else str(v) for v in value]
    return json.dumps(out)


def demultiplex(raw: bytes, demux: bool = False):
    """A multiplexed stream's payloads: joined (stdout and stderr as written), or with ``demux`` the
    tuple ``(stdout, stderr)``, each None when that stream wrote nothing (docker-py's shapes). A
    frame cut short by the end of the stream gives what it has; a rest shorter than a header is dropped."""
    parts: list[tuple[int, bytes]] = []
    pos, end = 0, len(raw)
    while end - pos >= STREAM_HEADER:
        stream, length = raw[pos], int.from_bytes(raw[pos + 4:pos + 8], "big")
        payload = raw[pos + STREAM_HEADER:pos + STREAM_HEADER + length]
        pos += STREAM_HEADER + length
        if payload:
            parts.append((stream, payload))
    if not demux:
        return b"".join(p for _, p in parts)
    joined: list[list[bytes]] = [[], []]
    for stream, payload in parts:
        if stream not in (1, 2):
            raise ValueError(f"{stream} is not a valid stream")
        joined[stream - 1].append(payload)
    return tuple(b"".join(j) if j else None for j in joined)


def _epoch(value, what: str):
    """A since/until value as docker-py sends it: int or float seconds (> 0), a datetime as whole seconds."""
    if hasattr(value, "astimezone"):  # a datetime
        from datetime import datetime, timezone

        delta = value.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return delta.seconds + delta.days * 24 * 3600
    if isinstance(value, (int, float)) and value > 0:
        return value
    raise ValueError(f"{what} value should be datetime or positive int/float, not {type(value)}")


class Client:
    """The read-only subset of docker-py's ``APIClient`` over the unix socket at ``path`` (see the
    module's docstring). ``api_version``: the daemon's, asked on first use (:func:`connect` asks at once)."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = TIMEOUT, version: str | None = None) -> None:
        self.path, self.timeout = path, timeout
        self._version = version
        self._docker_py: Any = None

    # -- HTTP ------------------------------------------------------------------------------------

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        """One request, its answer read as its framing says: ``(status, headers (lower-case names),
        body)``. ConnectionLost when the socket cannot be reached, or the answer is cut short or not HTTP."""
        return engine_http.request(self.path, self.timeout, method, target, body, headers)

    @property
    def api_version(self) -> str:
        """The daemon's API version (asked on first use), or UNVERSIONED."""
        if self._version is None:
            self._version = self._ping()
        return self._version

    def _ping(self) -> str:
        status, headers, body = self.request("GET", "/_ping")
        if status != 200 or not headers.get("api-version"):
            raise self._error(status, body, "/_ping")
        return headers["api-version"]

    def _url(self, path: str, *args: str, versioned: bool = True) -> str:
        path = path.format(*(quote(a, safe="/:") for a in args))
        return f"/v{self.api_version}{path}" if versioned and self.api_version else path

    @staticmethod
    def _error(status: int, body: bytes, target: str) -> APIError:
        try:
            explanation = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            explanation = body.decode(errors="replace").strip()
        return (NotFound if status == 404 else APIError)(status, explanation, target)

    def _call(self, method: str, target: str, data: dict | None = None, headers: dict | None = None) -> tuple[dict, bytes]:
        """A request whose error status raises (APIError), with a JSON body when ``data`` is given:
        ``(headers, body)``."""
        body = None
        if data is not None:
            body = json.dumps({k: v for k, v in data.items() if v is not None}).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
        status, got, answer = self.request(method, target, body, headers)
        if status >= 400:
            raise self._error(status, answer, target)
        return got, answer

    def _json(self, target: str) -> Any:
        return self._decode(self._call("GET", target)[1], target)

    def _decode(self, body: bytes, target: str) -> Any:
        """A JSON answer's document; ConnectionLost (one line for every caller) when it is not JSON."""
        try:
            return json.loads(body)
        except ValueError as e:
            raise ConnectionLost(f"{self.path}: the daemon's answer to {target.split('?')[0]} is not JSON ({e})") from None

    # -- the subset -------------------------------------------------------------------------------

    def ping(self) -> bool:
        return self._call("GET", self._url("/_ping"))[1] == b"OK"

    def version(self, api_version: bool = True) -> dict:
        return self._json(self._url("/version", versioned=api_version))

    def info(self) -> dict:
        return self._json(self._url("/info"))

    def containers(self, quiet: bool = False, all: bool = False, trunc: bool = False, latest: bool = False,
                   since: str | None = None, before: str | None = None, limit: int = -1, size: bool = False,
                   filters: dict | None = None) -> list[dict]:
        return self.containers_later(quiet, all, trunc, latest, since, before, limit, size, filters)()

    def containers_later(self, quiet: bool = False, all: bool = False, trunc: bool = False, latest: bool = False,
                         since: str | None = None, before: str | None = None, limit: int = -1, size: bool = False,
                         filters: dict | None = None):
        """:meth:`containers`, asked now: returns a function that reads the answer (and raises
        as :meth:`containers` would), so the daemon lists while the caller works."""
        params = {"limit": 1 if latest else limit, "all": 1 if all else 0, "size": 1 if size else 0,
                  "trunc_cmd": 1 if trunc else 0, "since": since, "before": before}
        if filters:
            params["filters"] = convert_filters(filters)
        target = self._url("/containers/json") + query(params)
        pending = engine_http.send(self.path, self.timeout, "GET", target)

        def answer() -> list[dict]:
            status, _, body = pending.answer()
            if status >= 400:
                raise self._error(status, body, target)
            found = self._decode(body, target)
            if quiet:
                return [{"Id": c["Id"]} for c in found]
            if trunc:
                for c in found:
                    c["Id"] = c["Id"][:12]
            return found

        return answer

    def networks(self, names: list[str] | None = None, ids: list[str] | None = None,
                 filters: dict | None = None) -> list[dict]:
        wanted = dict(filters or {})
        if names:
            wanted["name"] = names
        if ids:
            wanted["id"] = ids
        return self._json(self._url("/networks") + query({"filters": convert_filters(wanted) if wanted else None}))

    def inspect_container(self, container: str) -> dict:
        return self._json(self._url("/containers/{0}/json", _resource(container)))

    def top(self, container: str, ps_args: str | None = None) -> dict:
        return self._json(self._url("/containers/{0}/top", _resource(container)) + query({"ps_args": ps_args}))

    def logs(self, container: str, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: int | str = "all", since=None, follow: bool | None = None, until=None):
        """The container's log up to now, as bytes (stdout and stderr as written); streaming
        (``stream`` or ``follow``) is docker-py's."""
        if stream or follow:
            return self._full().logs(container, stdout=stdout, stderr=stderr, stream=stream, timestamps=timestamps,
                                     tail=tail, since=since, follow=follow, until=until)
        container = _resource(container)
        if tail != "all" and (not isinstance(tail, int) or tail < 0):
            tail = "all"
        params = {"stderr": 1 if stderr else 0, "stdout": 1 if stdout else 0, "timestamps": 1 if timestamps else 0,
                  "follow": 0, "tail": tail}
        if since is not None:
            params["since"] = _epoch(since, "since")
        if until is not None:
            params["until"] = _epoch(until, "until")
        _, raw = self._call("GET", self._url("/containers/{0}/logs", container) + query(params))
        if self.inspect_container(container)["Config"]["Tty"]:
            return raw
        return demultiplex(raw)

    def exec_create(self, container: str, cmd, stdout: bool = True, stderr: bool = True, stdin: bool = False,
                    tty: bool = False, privileged: bool = False, user: str = "", environment=None,
                    workdir: str | None = None, detach_keys: str | None = None) -> dict:
        if isinstance(cmd, str):
            import shlex

            cmd = shlex.split(cmd)
        if isinstance(environment, dict):
            environment = [f"{k}={v}" for k, v in environment.items()]
        data = {"Container": container, "User": user, "Privileged": privileged, "Tty": tty,
                "AttachStdin": stdin, "AttachStdout": stdout, "AttachStderr": stderr, "Cmd": cmd,
                "Env": environment, "WorkingDir": workdir, "DetachKeys": detach_keys}
        target = self._url("/containers/{0}/exec", _resource(container))
        return self._decode(self._call("POST", target, data)[1], target)

    def exec_start(self, exec_id, detach: bool = False, tty: bool = False, stream: bool = False,
                   socket: bool = False, demux: bool = False):
        """Run the exec instance to its end: its output (joined, or ``(stdout, stderr)`` with
        ``demux``); detached, streamed or as a socket it is docker-py's."""
        if detach or stream or socket:
            return self._full().exec_start(exec_id, detach=detach, tty=tty, stream=stream, socket=socket, demux=demux)
        exec_id = exec_id.get("Id") if isinstance(exec_id, dict) else exec_id
        _, raw = self._call("POST", self._url("/exec/{0}/start", _resource(exec_id)), {"Tty": tty, "Detach": False},
                            {"Connection": "Upgrade", "Upgrade": "tcp"})
        if tty:
            return (raw or None, None) if demux else raw
        return demultiplex(raw, demux)

    def exec_inspect(self, exec_id) -> dict:
        return self._json(self._url("/exec/{0}/json", _resource(exec_id)))

    def get_archive(self, container: str, path: str, chunk_size: int | None = None, encode_stream: bool = False):
        """``(chunks, stat)``: a tar of ``path`` in the container (one chunk: it is read whole) and
        the path's stat from the ``X-Docker-Container-Path-Stat`` header (None when absent)."""
        headers = {"Accept-Encoding": "gzip, deflate" if encode_stream else "identity"}
        got, body = self._call("GET", self._url("/containers/{0}/archive", _resource(container)) + query({"path": path}),
                               headers=headers)
        stat = got.get("x-docker-container-path-stat")
        if stat:
            import base64

            stat = json.loads(base64.b64decode(stat))
        return iter([body] if body else []), stat or None

    # -- everything else: docker-py --------------------------------------------------------------

    def _full(self):
        """A docker-py ``APIClient`` on the same socket, made on first use (two threads may both
        make one: the last stays, harmless)."""
        if self._docker_py is None:
            import docker

            self._docker_py = docker.APIClient(base_url="unix://" + self.path, version=self.api_version or "auto",
                                               timeout=int(self.timeout))
        return self._docker_py

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._full(), name)

    def close(self) -> None:
        if self._docker_py is not None:
            self._docker_py.close()


def _resource(value) -> str:
    """A container or exec given as its id, its name, or docker-py's dict of it."""
    if isinstance(value, dict):
        value = value.get("Id", value.get("ID"))
    if not value:
        raise ValueError("Resource ID was not provided")
    return value


def connect(path: str = DEFAULT_SOCKET, timeout: float = TIMEOUT) -> Client:
    """A :class:`Client` on the socket at ``path``, the daemon's API version agreed (one round
    trip); ConnectionLost or APIError when the daemon does not answer."""
    client = Client(path, timeout)
    client.api_version  # noqa: B018 - asks the daemon
    return client
