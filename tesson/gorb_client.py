"""Gorb: the ``--gorb DEVICE://HOST:PORT`` URI, and a small client for Gorb's REST API.

Gorb (github.com/kobolog/gorb) programs the kernel's IPVS balancer and takes orders over HTTP. The
URI names Gorb's endpoint and, as its "scheme", the network device whose IPv4 address the shards'
published ports are reachable on (that address goes into every backend Gorb is given).

``requests`` and ``psutil`` are imported only when a URI is checked or a request is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tesson import log
from tesson.errors import TessonError, UsageError

TYPE_CHECKING = False  # requests (and typing) are imported only when a request is made
if TYPE_CHECKING:
    import requests

DEFAULT_PORT = 4672
URI_HELP = "expected DEVICE://HOST:PORT, e.g. eth0://10.0.0.1:4672"
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
CONNECT_RETRIES = 2


@dataclass(frozen=True)
class GorbURI:
    device: str
    host: str
    port: int
    address: str = ""  # the device's IPv4 address ("" when the device was not looked at)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.device}://{host}:{self.port}"


def parse_uri(text: str, check_device: bool = True, default_device: str | None = None) -> GorbURI:
    """Parse ``DEVICE://HOST:PORT``; with ``check_device``, the device must exist and have IPv4.

    A URI without a device of its own (``HOST:PORT``) takes ``default_device``: ``run --near``'s
    first network device (see tesson.frontend.gorb_services.near_network_device); without one it is an
    error. A URI that names its device keeps it, --near or not.

    Every mistake is a UsageError (exit 2) naming what is wrong.
    """
    text = (text or "").strip()
    if text and "://" not in text and default_device:
        text = f"{default_device}://{text}"

    def bad(why: str) -> UsageError:
        hint = URI_HELP
        if text.lower().startswith(("http://", "https://")):
            hint += "; the part before '://' names the network device to publish on, not a protocol"
        return UsageError(f"invalid Gorb URI {text!r}: {why} ({hint})")

    device, sep, rest = text.partition("://")
    if not sep:
        raise bad("no DEVICE:// in front, and no run --near network device to take instead")
    if not device:
        raise bad("no device name before '://'")
    if "/" in device or any(c.isspace() for c in device):
        raise bad(f"{device!r} is not a network device name")
    rest = rest[:-1] if rest.endswith("/") else rest
    if "/" in rest or "?" in rest or "#" in rest or "@" in rest:
        raise bad("only HOST:PORT may follow the device, no path, query or user")
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        if not close:
            raise bad("unclosed '[' in the host")
        if not tail:
            raise bad("no port")
        if not tail.startswith(":"):
            raise bad("expected ':PORT' after the bracketed host")
        port_text = tail[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise bad("no port")
        if ":" in host:
            raise bad("an IPv6 host must be in brackets, e.g. [fd00::1]:4672")
    if not host:
        raise bad("no host")
    if not port_text:
        raise bad("no port")
    if not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise bad(f"port {port} is out of range 1-65535")
    uri = GorbURI(device=device, host=host, port=port)
    if check_device:
        uri = GorbURI(device=device, host=host, port=port, address=device_ipv4(device))
    return uri


def device_ipv4(device: str) -> str:
    """The first IPv4 address of a network device on this host (the host's network namespace)."""
    import socket

    import psutil

    addrs = psutil.net_if_addrs()
    if device not in addrs:
        hint = ""
        if device.lower() in ("http", "https", "tcp"):
            hint = "; the part before '://' names the network device backends are published on, not a protocol"
        known = ", ".join(sorted(addrs)) or "none"
        raise UsageError(f"network device {device!r} of the Gorb URI does not exist on this host (devices: {known}){hint}")
    for a in addrs[device]:
        if a.family == socket.AF_INET and a.address:
            return a.address
    raise UsageError(f"network device {device!r} of the Gorb URI has no IPv4 address to publish shards on")


def service_name(group: str, port: int, proto: str) -> str:
    """``GROUP-PORT-PROTO``: the virtual service (and, through Gorb, Consul) name of one port."""
    safe = group.replace("/", "-").replace(":", "-")
    return f"{safe}-{port}-{proto.lower()}"


def backend_name(shard: str, port: int, proto: str) -> str:
    """``SHARDNAME-PORT-PROTO``: backend names are unique across Gorb, so port and protocol are in it."""
    safe = shard.replace("/", "-").replace(":", "-")
    return f"{safe}-{port}-{proto.lower()}"


# --- the client --------------------------------------------------------------------------------


class GorbError(TessonError):
    """Gorb answered with an error; ``message`` is its ``{"error": ...}``."""

    def __init__(self, base_url: str, method: str, path: str, status: int | None, message: str):
        self.base_url = base_url
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        super().__init__(self._text())

    def _text(self) -> str:
        return f"Gorb at {self.base_url} refused {self.method} {self.path}: {self.status} {self.message}"


class GorbUnreachable(GorbError):
    """Gorb could not be reached (refused, timed out, or hung up without an answer)."""

    def _text(self) -> str:
        return f"Gorb at {self.base_url} is unreachable ({self.method} {self.path}: {self.message})"


class GorbClient:
    """Gorb's REST API over one shared ``requests`` session.

    Connect and read timeouts on every call; connection errors (nothing was sent) are retried a few
    times with a short backoff; an answer, or a failure after the request went out, is never retried.
    """

    def __init__(
        self,
        base_url: str,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        connect_retries: int = CONNECT_RETRIES,
        backoff: float = 0.2,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.connect_retries = connect_retries
        self.backoff = backoff
        self._session: requests.Session | None = None

    @classmethod
    def for_uri(cls, uri: GorbURI, **kw) -> "GorbClient":
        return cls(uri.url, **kw)

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            retry = Retry(
                total=self.connect_retries,
                connect=self.connect_retries,
                read=0,
                status=0,
                other=0,
                redirect=0,
                backoff_factor=self.backoff,
                raise_on_status=False,
                allowed_methods=None,  # connect errors are safe for any method: nothing was sent
            )
            s = requests.Session()
            adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=4)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.headers["User-Agent"] = "tesson"
            self._session = s
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def request(self, method: str, path: str, body=None, ok=(200,)):
        """One call; returns ``(status, parsed body)`` for a status in ``ok``, else raises GorbError."""
        import requests

        url = self.base_url + path
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        log.debug("gorb request", method=method, url=url, body=body)
        try:
            r = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout)
        except requests.exceptions.ConnectTimeout:
            raise GorbUnreachable(self.base_url, method, path, None, f"no connection within {self.timeout[0]}s") from None
        except requests.exceptions.ReadTimeout:
            raise GorbUnreachable(self.base_url, method, path, None, f"no answer within {self.timeout[1]}s") from None
        except requests.exceptions.ConnectionError as e:
            if _caused_by(e, "ReadTimeoutError"):  # read retries are off, so it comes wrapped
                raise GorbUnreachable(self.base_url, method, path, None, f"no answer within {self.timeout[1]}s") from None
            raise GorbUnreachable(self.base_url, method, path, None, _why(e)) from None
        except requests.exceptions.RequestException as e:
            raise GorbUnreachable(self.base_url, method, path, None, _why(e)) from None
        log.debug("gorb answer", method=method, url=url, status=r.status_code)
        payload = _payload(r)
        if r.status_code in ok:
            return r.status_code, payload
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            message = payload["error"]
        else:
            message = (r.text or r.reason or "").strip()[:200] or "(no message)"
        raise GorbError(self.base_url, method, path, r.status_code, message)

    # Gorb's routes --------------------------------------------------------------------------------
    def create_service(self, vs: str, options: dict, exist_ok: bool = False) -> bool:
        """PUT /service/VS; False when it existed already (409) and ``exist_ok``."""
        status, _ = self.request("PUT", f"/service/{_seg(vs)}", options, ok=(200, 409) if exist_ok else (200,))
        return status == 200

    def create_backend(self, vs: str, rs: str, options: dict) -> None:
        self.request("PUT", f"/service/{_seg(vs)}/{_seg(rs)}", options)

    def set_weight(self, vs: str, rs: str, weight: int, missing_ok: bool = False) -> bool:
        """PATCH /service/VS/RS ``{"weight": W}`` (0: IPVS schedules no new connection to it, the
        open ones go on); False when unknown (404) and ``missing_ok``."""
        status, _ = self.request("PATCH", f"/service/{_seg(vs)}/{_seg(rs)}", {"weight": weight},
                                 ok=(200, 404) if missing_ok else (200,))
        return status == 200

    def remove_service(self, vs: str, missing_ok: bool = False) -> bool:
        """DELETE /service/VS (its backends go with it); False when unknown (404) and ``missing_ok``."""
        status, _ = self.request("DELETE", f"/service/{_seg(vs)}", ok=(200, 404) if missing_ok else (200,))
        return status == 200

    def remove_backend(self, vs: str, rs: str, missing_ok: bool = False) -> bool:
        status, _ = self.request(
            "DELETE", f"/service/{_seg(vs)}/{_seg(rs)}", ok=(200, 404) if missing_ok else (200,)
        )
        return status == 200

    def list_services(self) -> list:
        return self.request("GET", "/service")[1] or []

    def service(self, vs: str) -> dict | None:
        """GET /service/VS: options, health and backend names; None when Gorb does not know it."""
        status, payload = self.request("GET", f"/service/{_seg(vs)}", ok=(200, 404))
        return payload if status == 200 else None

    def backend(self, vs: str, rs: str) -> dict | None:
        """GET /service/VS/RS: options and metrics (status 0 up, 1 down, 2 removed); None when unknown."""
        status, payload = self.request("GET", f"/service/{_seg(vs)}/{_seg(rs)}", ok=(200, 404))
        return payload if status == 200 else None


def _seg(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _payload(r):
    if not r.content:
        return None
    try:
        return r.json()
    except ValueError:
        return r.text


def _caused_by(exc: BaseException, type_name: str) -> bool:
    seen: BaseException | None = exc
    hops = 0
    while seen is not None and hops < 10:
        if type(seen).__name__ == type_name:
            return True
        nxt = getattr(seen, "reason", None)
        if nxt is None and seen.args and isinstance(seen.args[0], BaseException):
            nxt = seen.args[0]
        seen, hops = nxt or seen.__cause__ or seen.__context__, hops + 1
    return False


def _why(exc: BaseException) -> str:
    """The innermost cause of a requests error, in a few words ('connection refused', ...)."""
    seen = exc
    while True:
        nxt = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    text = str(seen)
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "name or service not known" in low or "nodename nor servname" in low or "failed to resolve" in low:
        return "host name does not resolve"
    if "remotedisconnected" in low or "without response" in low or "aborted" in low or "reset by peer" in low:
        return "connection closed without an answer"
    if "timed out" in low:
        return "timed out"
    if "no route" in low or "unreachable" in low:
        return "no route to host"
    return text.split(": ", 1)[-1][:160] if text else type(seen).__name__
