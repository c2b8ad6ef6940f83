"""The embedded balancer's nginx configuration, generated from validated values only.

Everything that reaches the text is checked first: the group name by :mod:`tesson.names` (Docker's
container-name rule), shard names are ``GROUP-INDEX`` with an int index, ports are ints parsed from
Docker's own port-spec syntax by docker-py's ``split_port`` and range-checked here, the protocol is
``tcp`` or ``udp``, and the balancing method comes from a fixed table of nginx snippets. Nothing a
user types is copied into the file as it is, so no input can add a directive, and :func:`render`
re-checks every value it writes as a last line of defence.

The config runs nginx as the only process of a container: in the foreground, pid file under /tmp,
errors to stderr, the stream module loaded by absolute path (Debian ships it as a dynamic module and
enables it through /etc/nginx/modules-enabled, which this config does not read).

Shards are upstream servers by container name (``web-0:80``), found through Docker's embedded DNS on
the group's user-defined network. nginx resolves them when it loads the config, so the config lists
shards that are running, and a reload (SIGHUP) picks up recreated ones.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from tesson import names
from tesson.errors import UsageError

# Debian's libnginx-mod-stream (also in tesson:latest and tesson-base:bookworm).
DEBIAN_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
PID_FILE = "/tmp/tesson-nginx.pid"
CONFIG_PATH = "/etc/tesson/nginx.conf"

# Passive health: one refused/timed-out connect takes a shard out for FAIL_TIMEOUT, and the
# connection is retried on the next shard. On a local bridge a connect takes well under a
# millisecond, so one second only ever runs out for a shard that is gone.
MAX_FAILS = 1
FAIL_TIMEOUT = "10s"
CONNECT_TIMEOUT = "1s"
NEXT_UPSTREAM_TIMEOUT = "5s"
UDP_SESSION_TIMEOUT = "30s"
WORKER_CONNECTIONS = 4096

PROTOCOLS = ("tcp", "udp")

# --lb-method NAME -> the nginx upstream directive (None: nginx's default, weighted round robin).
METHODS: dict[str, Optional[str]] = {
    "least_conn": "least_conn",
    "round_robin": None,
    "default": None,
    "random": "random",
    "random_two": "random two",
    "random_two_least_conn": "random two least_conn",
    "hash": "hash $remote_addr consistent",
    "hash_remote_addr": "hash $remote_addr consistent",
}
# The methods a user sees in help and errors (the others are aliases).
METHOD_NAMES = ("least_conn", "round_robin", "random", "random_two", "random_two_least_conn", "hash")
DEFAULT_METHOD = {"tcp": "least_conn", "udp": "round_robin"}

_PORT_RE = re.compile(r"^[0-9]{1,5}$")
_HOST_PORT_RE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")
_SNIPPET_RE = re.compile(r"^[a-z_ $]+$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]+$")


@dataclass(frozen=True)
class PortEntry:
    """One published container port of the front door (a range spec gives one per port)."""

    container_port: int
    proto: str  # "tcp" or "udp"
    host_ip: Optional[str] = None  # None: all addresses, as docker run -p
    host_port: Optional[str] = None  # None: ephemeral; "8080" or a host range "8000-8010"
    spec: str = ""  # the -p text this came from, for messages

    @property
    def key(self) -> str:
        """Docker's name for the container side: ``80/tcp``."""
        return f"{self.container_port}/{self.proto}"


def _port(text: str, what: str, spec: str) -> int:
    if not _PORT_RE.match(text or ""):
        raise UsageError(f"invalid port spec {spec!r}: {what} {text!r} is not a port number")
    value = int(text)
    if not 1 <= value <= 65535:
        raise UsageError(f"invalid port spec {spec!r}: {what} {value} is out of range 1-65535")
    return value


def _host_port(text: str, spec: str) -> str:
    m = _HOST_PORT_RE.match(text)
    if not m:
        raise UsageError(f"invalid port spec {spec!r}: host port {text!r} is not a port or a range")
    lo = _port(m.group(1), "host port", spec)
    if m.group(2) is None:
        return str(lo)
    hi = _port(m.group(2), "host port", spec)
    if hi < lo:
        raise UsageError(f"invalid port spec {spec!r}: host port range {text!r} is empty")
    return f"{lo}-{hi}"


def parse_port_spec(spec: str) -> list[PortEntry]:
    """One ``-p`` spec as ``docker run -p`` reads it, validated for the balancer.

    ``80``, ``8080:80``, ``127.0.0.1:8080:80``, ``127.0.0.1::80``, ``53/udp``, ``8000-8001:80-81``.
    """
    from docker.utils.ports import split_port

    if not isinstance(spec, str) or not spec or spec != spec.strip():
        raise UsageError(f"invalid port spec {spec!r}")
    try:
        internal, external = split_port(spec)
    except ValueError as e:
        raise UsageError(f"invalid port spec {spec!r}: {e}") from None
    if not internal:
        raise UsageError(f"invalid port spec {spec!r}: the port range is empty")
    entries = []
    for i, port_proto in enumerate(internal):
        port_text, _, proto = port_proto.partition("/")
        proto = proto or "tcp"
        if proto not in PROTOCOLS:
            raise UsageError(f"invalid port spec {spec!r}: protocol {proto!r} (the balancer does tcp or udp)")
        port = _port(port_text, "container port", spec)
        host_ip = host_port = None
        if external is not None:
            ext = external[i]
            if isinstance(ext, tuple):
                host_ip, hp = ext
                try:
                    host_ip = str(ipaddress.ip_address(host_ip))
                except ValueError:
                    raise UsageError(f"invalid port spec {spec!r}: {host_ip!r} is not an IP address") from None
            else:
                hp = ext
            if hp is not None:
                host_port = _host_port(str(hp), spec)
        entries.append(PortEntry(port, proto, host_ip, host_port, spec))
    return entries


def parse_port_specs(specs: Iterable[str]) -> list[PortEntry]:
    """All ``-p`` specs, in order; a container port published twice is fine (two host bindings)."""
    out: list[PortEntry] = []
    seen_bindings: dict[tuple, str] = {}
    for spec in specs:
        for e in parse_port_spec(spec):
            if e.host_port is not None and "-" not in e.host_port:
                b = (e.host_ip or "0.0.0.0", e.host_port, e.proto)
                if b in seen_bindings:
                    raise UsageError(
                        f"port specs {seen_bindings[b]!r} and {spec!r} both publish host port {e.host_port}/{e.proto}"
                    )
                seen_bindings[b] = spec
            out.append(e)
    return out


def listeners(entries: Sequence[PortEntry]) -> list[tuple[int, str]]:
    """The distinct (container port, protocol) pairs nginx listens on, in order of first mention."""
    seen: dict[tuple[int, str], None] = {}
    for e in entries:
        seen.setdefault((e.container_port, e.proto), None)
    return list(seen)


def normalize_method(method: Optional[str]) -> Optional[str]:
    """``--lb-method`` text -> a key of :data:`METHODS` (``None`` stays None: per-protocol default)."""
    if method is None:
        return None
    key = re.sub(r"[\s-]+", "_", method.strip().lower())
    if key in ("rr", "roundrobin"):
        key = "round_robin"
    if key not in METHODS:
        raise UsageError(f"unknown balancing method {method!r}: use one of {', '.join(METHOD_NAMES)}")
    return key


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not names.NAME_RE.match(name):
        raise UsageError(f"refusing to write {name!r} into the balancer config")
    return name


def _check_port(port) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"refusing to write port {port!r} into the balancer config")
    return port


def render(
    group: str,
    shards: Sequence[str],
    entries: Sequence[PortEntry],
    method: Optional[str] = None,
    workers: Optional[int] = None,
    stream_module: Optional[str] = DEBIAN_STREAM_MODULE,
    pid_file: str = PID_FILE,
) -> str:
    """The whole nginx.conf for one group's balancer.

    ``shards``: the shard container names to balance over (``GROUP-i``); ``entries``: from
    :func:`parse_port_specs`; ``method``: ``--lb-method`` (validated here) or None for least_conn on
    TCP and round robin on UDP; ``workers``: worker processes (None: ``auto``).
    """
    names.validate_group(group)
    if not entries:
        raise UsageError("the balancer needs at least one port (-p)")
    if not shards:
        raise UsageError(f"group {group}: no shard to balance over")
    shard_names = [_check_name(s) for s in shards]
    for s in shard_names:
        if not s.startswith(group + "-"):
            raise UsageError(f"shard {s!r} is not a member of group {group!r}")
    method_key = normalize_method(method)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1024):
        raise UsageError(f"refusing {workers!r} worker processes")
    for path in (stream_module, pid_file):
        if path is not None and not _PATH_RE.match(path):
            raise UsageError(f"refusing path {path!r} in the balancer config")

    lines = [
        f"# nginx stream balancer for tesson group {group}; generated by tesson, do not edit.",
        "daemon off;",
        f"pid {pid_file};",
        "error_log stderr notice;",
        f"worker_processes {workers if workers is not None else 'auto'};",
        "worker_rlimit_nofile 16384;",
    ]
    if stream_module:
        lines.append(f"load_module {stream_module};")
    lines += [
        "",
        "events {",
        f"    worker_connections {WORKER_CONNECTIONS};",
        "}",
        "",
        "stream {",
        "    access_log off;",
        "",
    ]
    for port, proto in listeners(entries):
        _check_port(port)
        if proto not in PROTOCOLS:
            raise UsageError(f"refusing protocol {proto!r} in the balancer config")
        key = method_key or DEFAULT_METHOD[proto]
        snippet = METHODS[key]
        upstream = f"{proto}_{port}"
        lines.append(f"    upstream {upstream} {{")
        if snippet:
            assert _SNIPPET_RE.match(snippet)
            lines.append(f"        {snippet};")
        for s in shard_names:
            lines.append(f"        server {s}:{port} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};")
        lines.append("    }")
        lines.append("    server {")
        lines.append(f"        listen {port}{' udp' if proto == 'udp' else ''};")
        lines.append(f"        proxy_pass {upstream};")
        lines.append(f"        proxy_connect_timeout {CONNECT_TIMEOUT};")
        lines.append("        proxy_next_upstream on;")
        lines.append("        proxy_next_upstream_tries 0;")
        lines.append(f"        proxy_next_upstream_timeout {NEXT_UPSTREAM_TIMEOUT};")
        if proto == "tcp":
            lines.append("        tcp_nodelay on;")
        else:
            lines.append(f"        proxy_timeout {UDP_SESSION_TIMEOUT};")
        lines.append("    }")
        lines.append("")
    lines.append("}")
    return "\n".join(lines) + "\n"
