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
) -> str:
    """The whole nginx.conf for one group's balancer.

    ``shards``: ``{container name (GROUP-i): its IP address on the group network}``, the servers to
    balance over (the names only go into a comment, after being checked); ``ports``: the parsed
    ``-p`` specs (:class:`tesson.ports.Port`); ``method``: ``--lb-method`` (validated here) or None for least_conn on
    TCP and round robin on UDP; ``workers``: worker processes (None: ``auto``).
    """
    names.validate_group(group)
    pairs = listeners(ports)
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


def prepare_script(config: str = CONFIG_PATH, live: str = LIVE_PATH) -> str:
    """Shell text (POSIX sh, sed, hostname: all in any Debian image) that copies ``config`` to
    ``live`` with every upstream server at one of this container's own addresses
    (``hostname -I``) marked ``down``, so nginx never proxies to itself (see the module's notes).
    Fixed text: only the two checked paths are put in."""
    for path in (config, live):
        if not _PATH_RE.match(path):
            raise UsageError(f"refusing path {path!r} in the balancer's start script")
    return (
        f"set -e; conf={config}; live={live}; cp \"$conf\" \"$live.new\"; "
        "for a in $(hostname -I 2>/dev/null || true); do "
        "case \"$a\" in *[!0-9.]*) continue ;; esac; "
        "e=$(printf '%s' \"$a\" | sed 's/[.]/[.]/g'); "
        "sed -i \"s/^\\( *server $e:[0-9]*\\) \\(.*\\);\\$/\\1 \\2 down;/\" \"$live.new\"; "
        "done; mv \"$live.new\" \"$live\"; "
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
