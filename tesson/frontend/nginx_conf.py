"""The embedded balancer's nginx configuration, generated from validated values only.

Everything that reaches the text is checked first: the group name by :mod:`tesson.names` (Docker's
container-name rule), shard names by the same rule and as members of the group, ports are ints
(parsed by :mod:`tesson.ports` with docker-py's ``split_port``) checked again here, the protocol is
``tcp`` or ``udp``, and the balancing method comes from a fixed table of nginx snippets. Nothing a
user types is copied into the file as it is, so no input can add a directive, and :func:`render`
re-checks every value it writes as a last line of defence.

The config runs nginx as the only process of a container: in the foreground, pid file under /tmp,
errors to stderr, the stream module loaded by absolute path (Debian ships it as a dynamic module and
enables it through /etc/nginx/modules-enabled, which this config does not read).

Shards are upstream servers by their IP address on the group's network (``172.18.0.2:80``), never by
name: nginx then needs no DNS to start or reload, and a shard that is down when the balancer
(re)starts costs nothing but that shard (nginx refuses to start on a name it cannot resolve). The
addresses are those the shards had when the config was written; ``tesson ps`` flags a balancer
whose addresses no longer match the running shards, and ``tesson repair`` reloads it.

One hazard comes with addresses: Docker gives a restarting container the lowest free address of
the network, so a balancer that restarts while a shard is down may get that shard's address, and
nginx would then proxy to itself. The balancer therefore starts (and reloads) through
:func:`prepare_script`, which copies the config to :data:`LIVE_PATH` with any server at one of the
container's own addresses marked ``down``.

Where the balancer listens (:func:`host_network`): when every ``-p`` names one fixed host port, the
balancer runs in the host's network and nginx listens on the host addresses and ports themselves
(``listen 0.0.0.0:8080``), proxying to the shards' bridge addresses, which the host reaches
directly: no docker-proxy and no DNAT in front of it. Otherwise (an ephemeral host port ``-p 80``,
a range ``-p 8000-8010:80``: Docker chooses the port, and nginx in the host network cannot ask it
for one) the balancer stays on the group's bridge network, listens on the container ports and is
published by Docker. A ``-p`` without an address means every address, as with Docker: nginx then
listens on ``0.0.0.0`` and on ``[::]`` (IPv6 only); the start script drops the ``[::]`` listener on
a host without IPv6 (see :func:`prepare_script`). In the host network the container has no bridge
address of its own, so the own-address marking below finds nothing to mark there.

A reload (:func:`reload_script`) writes the new config beside the old one and checks it with
``nginx -t`` before anything is replaced: a config nginx refuses never becomes live, nor the one
the next start reads.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Mapping, Optional

from tesson import names
from tesson.errors import UsageError

# Debian's libnginx-mod-stream (also in tesson:latest and tesson-base:bookworm).
DEBIAN_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
PID_FILE = "/tmp/tesson-nginx.pid"
CONFIG_PATH = "/etc/tesson/nginx.conf"  # as tesson wrote it
LIVE_PATH = "/tmp/tesson-nginx.conf"  # what nginx loads: CONFIG_PATH, own address marked down
STAGED = ".new"  # a reload's files wait at PATH.new until nginx accepts them (see reload_script)

# Passive health: one refused or timed-out connect takes a shard out for FAIL_TIMEOUT, and the
# connection is retried on the next shard, so a dead shard costs a client a slower connection,
# not a failed one. On a local bridge a connect takes well under a millisecond; the timeout still
# lets one SYN retransmission (at 1 s) through, for a shard that is alive but whose accept queue
# overflowed under load.
MAX_FAILS = 1
FAIL_TIMEOUT = "10s"
CONNECT_TIMEOUT = "2s"
NEXT_UPSTREAM_TIMEOUT = "10s"
# Overload must not become an outage: when every shard has been marked failed (all of them timing
# out at once under a burst), nginx would refuse every connection for FAIL_TIMEOUT. So the
# methods that allow it (round robin, least_conn) also list every shard again as a backup that is
# never marked failed: with all primaries out, connections still go to the shards and wait.
BACKUP_METHODS = ("least_conn", "round_robin", "default")
UDP_SESSION_TIMEOUT = "30s"
WORKER_CONNECTIONS = 4096
# Shared memory per upstream, so every worker sees the same connection counts and failures.
ZONE_SIZE = "64k"

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

# Marks the listener for "every IPv6 address" that a -p without an address adds in the host network,
# so that the start script can drop it on a host without IPv6.
V6_ANY = "# every IPv6 address"
IPV6_PROBE = "/proc/net/if_inet6"  # exists when the kernel has IPv6 (in the balancer's network namespace)

_SNIPPET_RE = re.compile(r"^[a-z_ $]+$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]+$")


def listeners(ports: Iterable) -> list[tuple[int, str]]:
    """The distinct (container port, protocol) pairs nginx listens on, in order of first mention.

    ``ports``: :class:`tesson.ports.Port` (anything with ``.port`` and ``.proto``); one container
    port published on two host ports is one listener.
    """
    seen: dict[tuple[int, str], None] = {}
    for p in ports:
        seen.setdefault((_check_port(p.port), _check_proto(p.proto)), None)
    return list(seen)


def host_network(ports: Iterable) -> bool:
    """Whether the balancer for these ``-p`` specs runs in the host's network (else on the group's
    bridge network, published by Docker).

    Rule: every spec names one fixed host port (``8080:80``, ``127.0.0.1:8080:80``,
    ``[::1]:8080:80``, ``53:53/udp``). An ephemeral port (``80``, ``127.0.0.1::80``) or a range
    (``8000-8010:80``) is a port Docker chooses when it publishes the container; nginx in the host
    network could only pick one itself (bind to port 0 and hope nothing takes it before nginx does),
    and could not keep it across a restart, so such a group keeps the bridge network and Docker's
    publication, for all its ports (one container is in one network mode).
    """
    ports = list(ports)
    return bool(ports) and all(p.host_port and "-" not in p.host_port for p in ports)


def host_listeners(ports: Iterable) -> dict[tuple[int, str], list[tuple[str, int, bool]]]:
    """In the host network: ``{(container port, protocol): [(host address, host port, v6any)]}``,
    one entry per :func:`listeners` pair, with each ``-p`` of it; a ``-p`` without an address is
    ``0.0.0.0`` and ``::`` (``v6any`` True: nginx listens there with ``ipv6only=on``, the line
    marked :data:`V6_ANY`). Addresses are checked and written as ``ipaddress`` compresses them.

    A host address and port (and protocol) published for two container ports is a UsageError:
    nginx would refuse the config, and the port cannot go to two places."""
    ports = list(ports)
    out: dict[tuple[int, str], list[tuple[str, int, bool]]] = {pair: [] for pair in listeners(ports)}
    owner: dict[tuple[str, int, str], int] = {}
    for p in ports:
        if not p.host_port or "-" in p.host_port:
            raise UsageError(f"port spec {p.spec!r}: no fixed host port to listen on in the host network")
        host_port = _check_port(int(p.host_port))
        addrs = [(_check_address(p.host_ip).strip("[]"), False)] if p.host_ip else [("0.0.0.0", False), ("::", True)]
        for ip, v6any in addrs:
            if owner.setdefault((ip, host_port, p.proto), p.port) != p.port:
                raise UsageError(f"port spec {p.spec!r}: host port {ip}:{host_port}/{p.proto} is published twice")
            entries = out[(p.port, p.proto)]
            if not any((ip, host_port) == (have, hp) for have, hp, _ in entries):
                entries.append((ip, host_port, v6any))
    return out


def listening(conf: str) -> list[tuple[str, int, int, str]]:
    """What a host-network config written by :func:`render` (after :func:`prepare_script`) listens
    on: ``(host address, host port, container port, protocol)``, for ``tesson ps``."""
    out = []
    here: list[tuple[str, int, str]] = []
    for line in conf.splitlines():
        m = re.match(r"^\s*listen (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)( udp)?[ ;]", line)
        if m:
            here.append((m.group(1).strip("[]"), int(m.group(2)), "udp" if m.group(3) else "tcp"))
            continue
        m = re.match(r"^\s*proxy_pass (tcp|udp)_(\d+);", line)
        if m:
            out += [(ip, hp, int(m.group(2)), proto) for ip, hp, proto in here]
            here = []
    return out


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


def _check_address(address: str) -> str:
    """An IP address as nginx writes it in ``server ADDRESS:PORT`` (IPv6 in brackets)."""
    try:
        ip = ipaddress.ip_address(address)
    except (ValueError, TypeError):
        raise UsageError(f"refusing to write address {address!r} into the balancer config") from None
    return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed


def _check_proto(proto: str) -> str:
    if proto not in PROTOCOLS:
        raise UsageError(f"the nginx balancer does tcp and udp, not {proto!r}")
    return proto


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"refusing to write port {port!r} into the balancer config")
    return port


def render(
    group: str,
    shards: Mapping[str, str],
    ports: Iterable,
    method: Optional[str] = None,
    workers: Optional[int] = None,
    stream_module: Optional[str] = DEBIAN_STREAM_MODULE,
    pid_file: str = PID_FILE,
    host: bool = False,
) -> str:
    """The whole nginx.conf for one group's balancer.

    ``shards``: ``{container name (GROUP-i): its IP address on the group network}``, the servers to
    balance over (the names only go into a comment, after being checked); ``ports``: the parsed
    ``-p`` specs (:class:`tesson.ports.Port`); ``method``: ``--lb-method`` (validated here) or None for least_conn on
    TCP and round robin on UDP; ``workers``: worker processes (None: ``auto``); ``host``: the
    balancer runs in the host's network (:func:`host_network`) and listens on the ``-p`` host
    addresses and ports (:func:`host_listeners`), else on the container ports.
    """
    names.validate_group(group)
    ports = list(ports)
    pairs = listeners(ports)
    if host:
        listens = {pair: [(f"[{ip}]:{hp}" if ":" in ip else f"{ip}:{hp}", v6any) for ip, hp, v6any in found]
                   for pair, found in host_listeners(ports).items()}
    else:
        listens = {pair: [(str(pair[0]), False)] for pair in pairs}
    if not pairs:
        raise UsageError("the balancer needs at least one port (-p)")
    if not shards:
        raise UsageError(f"group {group}: no shard to balance over")
    if not isinstance(shards, Mapping):
        raise UsageError("the balancer's shards must be given as {name: address}")
    servers = []
    for name, address in shards.items():
        _check_name(name)
        if not name.startswith(group + "-"):
            raise UsageError(f"shard {name!r} is not a member of group {group!r}")
        servers.append((name, _check_address(address)))
    method_key = normalize_method(method)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1024):
        raise UsageError(f"refusing {workers!r} worker processes")
    for path in (stream_module, pid_file):
        if path is not None and not _PATH_RE.match(path):
            raise UsageError(f"refusing path {path!r} in the balancer config")

    lines = [
        f"# nginx stream balancer for tesson group {group}; generated by tesson, do not edit.",
        *(f"# shard {name} at {address}" for name, address in servers),
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
    for port, proto in pairs:
        key = method_key or DEFAULT_METHOD[proto]
        snippet = METHODS[key]
        upstream = f"{proto}_{port}"
        lines.append(f"    upstream {upstream} {{")
        lines.append(f"        zone {upstream} {ZONE_SIZE};")
        if snippet:
            if not _SNIPPET_RE.match(snippet):  # METHODS is ours, but the config must never carry more
                raise ValueError(f"balancing method {key!r} has an unsafe snippet {snippet!r}")
            lines.append(f"        {snippet};")
        for _name, address in servers:
            lines.append(f"        server {address}:{port} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};")
        if key in BACKUP_METHODS:
            for _name, address in servers:
                lines.append(f"        server {address}:{port} backup max_fails=0;")
        lines.append("    }")
        lines.append("    server {")
        for where, v6any in listens[(port, proto)]:
            udp = " udp" if proto == "udp" else ""
            lines.append(f"        listen {where}{udp} ipv6only=on; {V6_ANY}" if v6any else f"        listen {where}{udp};")
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


def prepare_script(config: str = CONFIG_PATH, live: str = LIVE_PATH, ipv6_probe: str = IPV6_PROBE) -> str:
    """Shell text (POSIX sh, sed, hostname: all in any Debian image) that copies ``config`` to
    ``live`` with every upstream server at one of this container's own addresses
    (``hostname -I``) marked ``down``, so nginx never proxies to itself (see the module's notes),
    and without the listeners marked :data:`V6_ANY` when ``ipv6_probe`` does not exist (a kernel
    without IPv6, where nginx could not listen on ``[::]``). Fixed text: only the checked paths are
    put in."""
    for path in (config, live, ipv6_probe):
        if not _PATH_RE.match(path):
            raise UsageError(f"refusing path {path!r} in the balancer's start script")
    return (
        f"set -e; conf={config}; live={live}; cp \"$conf\" \"$live.new\"; "
        "for a in $(hostname -I 2>/dev/null || true); do "
        "case \"$a\" in *[!0-9.]*) continue ;; esac; "
        "e=$(printf '%s' \"$a\" | sed 's/[.]/[.]/g'); "
        "sed -i \"s/^\\( *server $e:[0-9]*\\) \\(.*\\);\\$/\\1 \\2 down;/\" \"$live.new\"; "
        f"done; [ -e {ipv6_probe} ] || sed -i '/ {V6_ANY}$/d' \"$live.new\"; "
        "mv \"$live.new\" \"$live\"; "
    )


def start_command() -> list[str]:
    """The balancer container's entrypoint: prepare the live config, then nginx in the foreground."""
    return ["/bin/sh", "-c", prepare_script() + f"exec nginx -e stderr -c {LIVE_PATH}"]


def reload_script(config: str = CONFIG_PATH, live: str = LIVE_PATH, also: Iterable[str] = ()) -> str:
    """Shell text for a reload that never leaves a config nginx refuses in place.

    The new config waits at ``config + STAGED`` (and each file of ``also``, written with it, at
    ``PATH + STAGED``). Its live copy is prepared (:func:`prepare_script`) at ``live + ".next"`` and
    checked there by ``nginx -t``. Only when nginx accepts it do the staged files replace the
    previous ones (``config``, then ``also``, then ``live`` last), so a SIGHUP afterwards loads it.
    When nginx refuses it, the staged files are removed and the script exits with nginx's status,
    its message on stderr: the previous config stays both live and on disk, for the running nginx
    and for the container's next start. Fixed text: only the checked paths are put in."""
    also = list(also)
    for path in (config, live, *also):
        if not _PATH_RE.match(path):
            raise UsageError(f"refusing path {path!r} in the balancer's reload script")
    nxt = live + ".next"
    moves = [(config + STAGED, config), *((p + STAGED, p) for p in also), (nxt, live)]
    staged = " ".join(f'"{a}"' for a, _ in moves) + f' "{nxt}.new"'
    return (
        prepare_script(config + STAGED, nxt)
        + f'nginx -t -q -e stderr -c "{nxt}" || {{ rc=$?; rm -f {staged}; exit "$rc"; }}; '
        + "".join(f'mv "{a}" "{b}"; ' for a, b in moves)
    )


def reload_command(also: Iterable[str] = ()) -> list[str]:
    """For a reload: check the staged config and install it only if nginx accepts it
    (:func:`reload_script`); the caller sends SIGHUP when this exits 0."""
    return ["/bin/sh", "-c", reload_script(also=also)]
