"""``-p`` port specs, as ``docker run -p`` takes them, parsed with docker-py's own helper (its
module alone: see tesson.docker_client.docker_py_module).

``80``, ``8080:80``, ``127.0.0.1:8080:80``, ``127.0.0.1::80``, ``53/udp``, ``8000-8001:80-81``,
``8000-8010:80`` (any free host port of the range). A range is expanded to one :class:`Port` per
container port. Everything is checked here, before any daemon is called, so a bad spec is one line
and exit 2.
"""

from __future__ import annotations

from tesson.errors import UsageError
from tesson.request import Value

TYPE_CHECKING = False  # typing is not imported on the read-only verbs' path
if TYPE_CHECKING:
    from typing import Final

PROTOCOLS = ("tcp", "udp", "sctp")


class Port(Value):
    """One container port of one ``-p`` spec, and where the host publishes it.

    ``host_ip`` is ``""`` for every address; ``host_port`` is ``""`` for an ephemeral port, else a
    port (``"8080"``) or a range of ports to choose from (``"8000-8010"``), as Docker's
    ``PortBindings`` take them. Immutable (a :class:`~tesson.request.Value`).
    """

    __slots__ = ("spec", "port", "proto", "host_ip", "host_port")

    def __init__(self, spec: str, port: int, proto: str = "tcp", host_ip: str = "", host_port: str = ""):
        self.spec: Final = spec
        self.port: Final = port
        self.proto: Final = proto
        self.host_ip: Final = host_ip
        self.host_port: Final = host_port

    @property
    def key(self) -> str:
        """Docker's name for the container port: ``"80/tcp"``."""
        return f"{self.port}/{self.proto}"

    def binding(self) -> dict:
        """This port's entry of ``HostConfig.PortBindings[key]``."""
        return {"HostIp": self.host_ip, "HostPort": self.host_port}

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{host}{self.host_port or '*'}->{self.key}"


def _port_number(text: str, spec: str, what: str, allow_zero: bool = False) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"invalid port spec {spec!r}: {what} {text!r} is not a number") from None
    if not (0 if allow_zero else 1) <= value <= 65535:
        raise UsageError(f"invalid port spec {spec!r}: {what} {value} is out of range 1-65535")
    return value


def _host_port(text: str | None, spec: str) -> str:
    if text is None or text == "":
        return ""
    lo, sep, hi = text.partition("-")
    a = _port_number(lo, spec, "host port", allow_zero=True)
    if not sep:
        return "" if a == 0 else str(a)
    b = _port_number(hi, spec, "host port")
    if b < a:
        raise UsageError(f"invalid port spec {spec!r}: host port range {text!r} is backwards")
    return f"{a}-{b}"


def parse_one(spec: str) -> list[Port]:
    """Parse one ``-p`` spec into its container ports (UsageError naming the spec if it is bad)."""
    from tesson.docker_client import docker_py_module

    split_port = docker_py_module("utils.ports").split_port  # without importing docker-py's client

    text = spec.strip()
    if not text:
        raise UsageError("invalid port spec '': it is empty")
    try:
        internal, external = split_port(text)
    except ValueError as e:
        # docker-py's "Invalid port ..." restates the grammar; its other messages say what is wrong
        why = "" if str(e).startswith("Invalid port") else f" ({e})"
        raise UsageError(
            f"invalid port spec {spec!r}: expected [[IP:]HOST_PORT[-END]:]PORT[-END][/tcp|udp|sctp]{why}"
        ) from None
    out: list[Port] = []
    for i, item in enumerate(internal):
        number, _, proto = item.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOCOLS:
            raise UsageError(f"invalid port spec {spec!r}: protocol must be tcp, udp or sctp")
        port = _port_number(number, spec, "container port")
        host_ip, host_port = "", None
        if external is not None:
            ext = external[i] if len(external) == len(internal) else external[0]
            if isinstance(ext, tuple):
                host_ip, host_port = ext[0], ext[1]
            else:
                host_port = ext
        if host_ip:
            import ipaddress

            try:
                host_ip = str(ipaddress.ip_address(host_ip.strip("[]")))
            except ValueError:
                raise UsageError(f"invalid port spec {spec!r}: {host_ip!r} is not an IP address") from None
        out.append(Port(spec=text, port=port, proto=proto, host_ip=host_ip, host_port=_host_port(host_port, spec)))
    return out


def parse(specs: list[str] | None) -> list[Port]:
    """Parse every ``-p`` spec, in order; an exact repeat is dropped.

    One container port may be published twice (``-p 8080:80 -p 8081:80``), as with ``docker run``.
    """
    out: list[Port] = []
    for spec in specs or []:
        for p in parse_one(spec):
            if p not in out:
                out.append(p)
    return out


def display(host_ip: str, host_port: int | str, port: int | str, proto: str = "tcp") -> str:
    """A published port as ``docker ps`` shows it: ``0.0.0.0:8080->80/tcp``, ``[::1]:8080->80/udp``
    (an empty ``host_ip`` is every address, ``0.0.0.0``)."""
    ip = host_ip or "0.0.0.0"
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{host_port}->{port}/{proto}"


def exposed_ports(ports: list[Port]) -> dict:
    """``Config.ExposedPorts`` for these ports."""
    return {p.key: {} for p in ports}


def port_bindings(ports: list[Port]) -> dict:
    """``HostConfig.PortBindings`` for these ports (several bindings of one key are kept)."""
    out: dict[str, list] = {}
    for p in ports:
        out.setdefault(p.key, []).append(p.binding())
    return out
