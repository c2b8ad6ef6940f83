"""What the nginx frontend does to Docker and the host, apart from its hooks: files into and out of
the balancer container, the group network, waiting for nginx, reloading it, and the checks made
before anything exists (host ports free, ``--lb-cpus`` on this machine)."""

from __future__ import annotations

import errno
import io
import json
import re
import socket
import tarfile
import time
from typing import TYPE_CHECKING, Any, Iterable

from tesson import cpulist, log, names
from tesson import labels as L
from tesson.container import Container, last_log_lines
from tesson.docker_client import explain, is_status, unless_gone
from tesson.errors import TessonError, UsageError
from tesson.frontend import Context, Undo

if TYPE_CHECKING:
    from tesson.ports import Port
    from tesson.topology import Topology

READY_TIMEOUT = 15.0  # seconds for nginx to load its config in a fresh container
# Beside the config in the balancer: {shard name: address} as written into the config, so ps can
# tell a stale balancer and repair whether a reload is needed.
ADDRESSES_PATH = "/etc/tesson/upstreams.json"


def tar(files: dict[str, bytes]) -> bytes:
    """A tar archive of ``{absolute path: bytes}`` (with parent folders) for ``put_archive`` at /."""
    buf = io.BytesIO()
    now = time.time()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for path, data in files.items():
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    archive.addfile(info)
            f = tarfile.TarInfo("/".join(parts))
            f.size, f.mode, f.mtime = len(data), 0o644, now
            archive.addfile(f, io.BytesIO(data))
    return buf.getvalue()


def read_file(client: Any, cid: str, path: str) -> bytes | None:
    """One file out of a container (None if it is not there)."""
    got = unless_gone(client.get_archive, cid, path)
    if got is None:
        return None
    data = b"".join(got[0])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        f = archive.extractfile(member) if member is not None else None
        return f.read() if f is not None else None


def loaded_addresses(client: Any, cid: str) -> dict | None:
    """``{shard name: address}`` as written into the balancer's config (None: unreadable)."""
    try:
        loaded = json.loads(read_file(client, cid, ADDRESSES_PATH) or b"null")
    except (ValueError, tarfile.TarError):
        return None
    return loaded if isinstance(loaded, dict) else None


def shard_addresses(ctx: Context) -> dict[str, str]:
    """``{name: address on the group network}`` of the group's running shards that have one, by
    index: the servers the balancer can reach now (less those a scale or update took out of the
    front door: ``ctx.draining``)."""
    net = names.network_name(ctx.group)
    found = ctx.docker.containers(filters={**L.filters(group=ctx.group, role=L.ROLE_SHARD), "status": "running"})
    out = []
    for c in map(Container, found):
        index = c.shard_index
        if index is None or c.name != ctx.shard_name(index) or index in ctx.draining:
            continue
        out.append((index, c.name, c.address_on(net)))
    return {name: ip for _, name, ip in sorted(out) if ip}


def host_port_error(text: str) -> str | None:
    """``host port ADDR:PORT is already in use (REASON)`` when a daemon error (publishing in the
    bridge network) or nginx's last words (listening in the host network) say so, else None."""
    low = text.lower()
    if "already allocated" not in low and "address already in use" not in low:
        return None
    m = re.search(r"bind\(\) to (\S+?:\d+) failed", text)
    if m:  # nginx: "[emerg] bind() to 0.0.0.0:8080 failed (98: Address already in use)"
        return f"host port {m.group(1)} is already in use (nginx in the host network could not listen there)"
    m = re.search(r"(?:Bind for |listen (?:tcp|udp)[46]? )(\S+?:\d+)", text)
    where = m.group(1) if m else "(one of -p)"
    return f"host port {where} is already in use ({text.rsplit(': ', 1)[-1].strip()})"


def in_host_network(c: Container) -> bool:
    """The balancer container runs in the host's network (a summary or an inspect)."""
    return ((c.raw.get("HostConfig") or {}).get("NetworkMode") or "") == "host"


def check_host_ports(ports: Iterable[Port], v6_any: bool = False) -> None:
    """Fail before anything is made when a fixed host port of ``-p`` is already taken here.

    Only meaningful when the daemon runs on this machine and tesson shares the host's network (as
    the CLI plugin does); a port this process cannot judge (another address, another namespace) is
    left to the daemon, whose refusal at the balancer's start (or nginx's, in the host network)
    rolls the run back just the same. ``v6_any``: a ``-p`` without an address also needs ``[::]``
    (IPv6 only), as the nginx balancer listens there in the host network.
    """
    for p in ports:
        if not p.host_port or "-" in p.host_port:
            continue
        for ip in [p.host_ip] if p.host_ip else ["0.0.0.0", *(["::"] if v6_any else [])]:
            _check_free(p, ip)


def _check_free(p: Port, ip: str) -> None:
    """TessonError if ``ip``:``p.host_port`` cannot be bound for ``p.proto`` because it is in use."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
    try:
        s = socket.socket(family, kind)
    except OSError:  # no IPv6 here: nothing to judge
        return
    try:
        if kind == socket.SOCK_STREAM:  # as the daemon's proxy does; TIME_WAIT does not count
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((ip, int(p.host_port)))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise TessonError(
                f"host port {f'[{ip}]' if ':' in ip else ip}:{p.host_port}/{p.proto} (from -p {p.spec}) is already in use on this machine"
            ) from None
    finally:
        s.close()


def check_cpus(text: str | None, topo: Topology) -> list[int]:
    """``--lb-cpus``: a cpulist whose CPUs the topology ``run`` read has (and this process may use)."""
    if not text:
        return []
    try:
        cpus = cpulist.parse(text)
    except ValueError:
        raise UsageError(f"--lb-cpus {text!r} is not a CPU list (like 0-3,8)") from None
    if not cpus:
        raise UsageError(f"--lb-cpus {text!r} names no CPU")
    have = topo.pus
    missing = [c for c in cpus if c not in have]
    if missing:
        raise UsageError(
            f"--lb-cpus {text!r}: CPU {cpulist.format(missing)} is not available on this machine "
            f"(available: {cpulist.format(have)})"
        )
    return cpus


def group_networks(ctx: Context) -> list[dict]:
    """The group's ``tesson-GROUP`` network, if it exists (a list of zero or one)."""
    name = names.network_name(ctx.group)
    nets = ctx.docker.networks(names=[name], filters=L.filters(group=ctx.group))
    return [n for n in nets if n.get("Name") == name]


def make_network(ctx: Context, record: bool) -> str:
    """Create ``tesson-GROUP`` and return its id (everything refers to it by id: Docker does not
    keep network names unique under a race, so two runs of one group may both make one).

    One left by an earlier run of this group, or made a moment ago by a concurrent run that has not
    claimed the group yet, is reused (not recorded for undo: this run did not make it); a group
    that has containers already is in use, and a network of that name that is not tesson's is an
    error."""
    client, name = ctx.docker, names.network_name(ctx.group)
    labels = {L.GROUP: ctx.group, L.ROLE: L.ROLE_NETWORK, L.FRONTEND: "nginx"}
    try:
        net_id = client.create_network(name, driver="bridge", labels=labels, check_duplicate=True)["Id"]
    except Exception as e:
        if not is_status(e, 409):
            raise TessonError(f"could not create network {name}: {explain(e)}") from None
        return _existing_network(ctx, name)
    log.info("network created", network=name, id=net_id[:12])
    oldest = _existing_network(ctx, name)
    if oldest != net_id:  # a concurrent run made one too: all use the oldest, the others go at once
        unless_gone(client.remove_network, net_id)
        log.info("network removed: another run of the group made one first", network=name, id=net_id[:12])
        return oldest
    if record:
        run_id = ctx.labels.get(L.RUN)
        ctx.undo.add(f"network {name}", lambda: _undo_network(client, ctx.group, name, net_id, run_id))
    return net_id


def _existing_network(ctx: Context, name: str) -> str:
    """The id of the network ``name`` that exists already (the oldest, should a race have made two)."""
    client = ctx.docker
    try:
        found = [n for n in client.networks(names=[name]) if n.get("Name") == name]
    except Exception as e:
        raise TessonError(f"network {name} exists but cannot be listed: {explain(e)}") from None
    if not found:
        raise TessonError(f"network {name} exists and vanished again: another run of group {ctx.group} "
                          "may be starting or failing; try again")
    strangers = [n for n in found if (n.get("Labels") or {}).get(L.GROUP) != ctx.group]
    if strangers:
        raise TessonError(
            f"a network named {name} exists and is not tesson's for group {ctx.group}: "
            "remove it or pick another group name"
        )
    existing = min(found, key=lambda n: (n.get("Created") or "", n["Id"]))
    log.info("network reused", network=name, id=existing["Id"][:12])
    return existing["Id"]


def _on_network(c: Container, name: str, net_id: str) -> bool:
    """Whether a container refers to the network (by id, or by a name that may be it)."""
    mode = (c.raw.get("HostConfig") or {}).get("NetworkMode") or ""
    if mode in (net_id, name) or (len(mode) >= 12 and net_id.startswith(mode)):
        return True
    nets = ((c.raw.get("NetworkSettings") or {}).get("Networks") or {}).values()
    return any((n or {}).get("NetworkID") == net_id for n in nets)


def _undo_network(client: Any, group: str, name: str, net_id: str, run_id: str | None) -> object:
    """A failed run's undo of the network it made, unless another run of the group uses it.

    The network is made before shard 0 claims the group's name, so two concurrent runs of one
    group can both get here: the one that made the network may be the one that loses the name,
    while the winner (which found the network and reuses it) has containers on it that are only
    created, holding no endpoint yet, so Docker would let the network go from under them. A
    container of the group from another run (another ``io.tesson.run``) on this network (by id)
    keeps it; one on another network of the same name (a race made two) does not.
    """
    others = [c for c in map(Container, client.containers(all=True, filters=L.filters(group=group)))
              if c.labels.get(L.RUN) != run_id and _on_network(c, name, net_id)]
    if others:
        log.info("network kept: another run of the group uses it", network=name, containers=[c.name for c in others])
        return Undo.KEPT
    unless_gone(client.remove_network, net_id)
    return None


def last_words(client: Any, cid: str) -> str:
    """The balancer's last three log lines, for an error message (nginx's reason for exiting)."""
    try:
        lines = last_log_lines(client, cid, count=3, tail=5)
    except Exception as e:
        return f"(no logs: {explain(e)})"
    return " | ".join(lines)[:400] or "no output"


def wait_ready(client: Any, cid: str, name: str, pid_file: str, what: str = "balancer") -> None:
    """Until nginx wrote its pid file: it has parsed the config and opened every listening
    socket. Fail with nginx's own words if it exits instead. (Any container that says it is ready
    by writing a file: ``what`` names it in errors, Gorb dr's VIP agent say.)"""
    deadline = time.monotonic() + READY_TIMEOUT
    delay = 0.02
    while True:
        if not Container(client.inspect_container(cid)).steadily_running:
            raise TessonError(f"{what} {name} exited: {last_words(client, cid)}")
        got = unless_gone(client.get_archive, cid, pid_file)
        if got is not None:
            for _ in got[0]:
                pass
            return
        if time.monotonic() > deadline:
            raise TessonError(f"{what} {name} did not come up in {READY_TIMEOUT:.0f}s: {last_words(client, cid)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
