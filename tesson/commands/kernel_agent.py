"""``tesson kernel-agent VERB --group GROUP`` (hidden): the kernel front door's agent, run in the
``GROUP-lb`` container (host network, CAP_NET_ADMIN, the daemon's socket).

- ``run``: hold every host port of the group with a bound socket, write the table, say so
  (``/run/tesson-agent/ready``), then follow the daemon's events for the group's containers and
  rewrite the table whenever the set of running, healthy shards changes. Every 30 s it also checks
  the daemon's state, in case an event was missed. SIGTERM ends it; the rules stay.
- ``sync [--out 3,4]``: write the table once from the daemon's state, with the shards ``--out``
  held out of rotation (and none without it): ``scale`` and ``update`` take shards out of the door
  and put them back this way, ``repair`` with no ``--out`` (see *Held shards*). ``drain``: take
  every shard out of rotation and keep them out until the agent starts again (stop). ``status``:
  what the kernel has now. ``purge``: remove the table, the DOCKER-USER accepts and the bridge's
  route_localnet. ``probe``: can this host's kernel and this container's capabilities do the front
  door at all?

Every verb prints one JSON object on stdout (``run``: none) and fails with one line, exit 1.
Writers take turns on a lock file, so an exec'd ``sync`` or ``drain`` never interleaves with the
running agent's own writes; every write records what it wrote (``ready``), and the running agent
compares the daemon's state with that record, whoever wrote it last.

Held shards: the indexes of the last ``sync --out`` are kept in ``/run/tesson-agent/held`` (the
agent container's own file system: they outlive a restart of the agent, not its removal), and
every write, the running agent's own included, leaves them out (:func:`kernel_rules.rotation`):
a shard being drained stays out when an event comes, and the successor an ``update`` starts
under the same index stays out until the change says it is healthy. A shard that stops leaves
the rotation as before, held or not. A change cut short leaves its holds; ``repair`` (a ``sync``
without ``--out``) or the next change clears them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager

from tesson import log, nft
from tesson.errors import TessonError
from tesson.frontend import kernel_rules as K

STATE_DIR = "/run/tesson-agent"
READY = STATE_DIR + "/ready"
DRAINED = STATE_DIR + "/drained"
HELD = STATE_DIR + "/held"  # JSON list of the shard indexes a scale or update holds out of rotation
LOCK = STATE_DIR + "/lock"
RESYNC = 30.0  # seconds between checks of the daemon's state when no event came
EVENTS = {"start", "restart", "die", "stop", "kill", "destroy", "pause", "unpause", "oom",
          "health_status", "health_status: healthy", "health_status: unhealthy", "connect", "disconnect"}


@contextmanager
def _locked():
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# -- what should be -------------------------------------------------------------------------------

class Wanted:
    """The group as the daemon has it: doors (from the group's labels), bridge, and the running,
    healthy shards as ``(index, Backend)`` (in rotation unless held: :func:`kernel_rules.rotation`)."""

    def __init__(self, doors, bridge, backends) -> None:
        self.doors, self.bridge, self.backends = doors, bridge, backends


def wanted(client, group: str, down=frozenset(), doors=None) -> Wanted:
    """``down``: ids of containers an event said are down (left out whatever the list says).
    ``doors``: the group's doors when a write already read them from its labels (which never
    change); parsing them again imports docker-py, most of an exec'd ``sync``'s time."""
    from tesson.labels import GROUP, PORTS, ROLE, SHARD
    from tesson.names import network_name

    found = client.containers(all=True, filters={"label": [f"{GROUP}={group}"]})
    labels = next((c.get("Labels") or {} for c in found if (c.get("Labels") or {}).get(PORTS)), None)
    if labels is None:
        raise TessonError(f"no container of group {group} on the daemon: nothing to publish")
    if doors is None:
        from tesson import ports as P
        from tesson.frontend.kernel import doors_of

        doors = doors_of(P.parse(json.loads(labels[PORTS])))
    net_name = network_name(group)
    nets = [n for n in client.networks(names=[net_name]) if n.get("Name") == net_name]
    if not nets:
        raise TessonError(f"the group's network {net_name} is missing (tesson repair -g {group} makes it again)")
    net = nets[0]
    bridge = (net.get("Options") or {}).get("com.docker.network.bridge.name") or "br-" + net["Id"][:12]
    backends = []
    for c in found:
        lab = c.get("Labels") or {}
        if lab.get(ROLE) != "shard" or c.get("State") != "running" or c.get("Id") in down:
            continue
        status = c.get("Status") or ""
        if "(unhealthy)" in status or "(health: starting)" in status or "Paused" in status:
            continue
        try:
            index = int(lab.get(SHARD, ""))
        except ValueError:
            continue
        name = (c.get("Names") or ["?"])[0].lstrip("/")
        if name != f"{group}-{index}":
            continue
        address = (((c.get("NetworkSettings") or {}).get("Networks") or {}).get(net_name) or {}).get("IPAddress")
        if address:
            backends.append((index, K.Backend(name, address)))
    return Wanted(doors, bridge, sorted(backends, key=lambda b: b[0]))


class LocalDaemon:
    """The two listings :func:`wanted` reads, as docker-py's ``APIClient`` answers them, over the
    local socket with the standard library: an exec'd ``sync`` (each step of a scale or update)
    then starts without importing docker-py and requests, a third of its time."""

    def containers(self, all: bool = False, filters: dict | None = None) -> list[dict]:
        from tesson.daemon_claims import get_json, query

        return get_json("/containers/json" + query(all="1" if all else "0", filters=filters or {}))

    def networks(self, names: list[str] | None = None) -> list[dict]:
        from tesson.daemon_claims import get_json, query

        return get_json("/networks" + query(filters={"name": list(names or [])}))


def _client():
    """A light client on the local socket (the agent's own), else docker-py's."""
    from tesson.daemon_claims import local_socket

    if local_socket() is not None:
        return LocalDaemon()
    from tesson import docker_client

    return docker_client.connect()


# -- writing ----------------------------------------------------------------------------------------

def _docker_user() -> dict | None:
    return nft.listing("chain", "ip", *K.DOCKER_USER[:1], K.DOCKER_USER[1])


def held() -> list[int]:
    """The shard indexes held out of rotation (the last ``sync --out``); none when unreadable."""
    try:
        with open(HELD) as f:
            return sorted({int(i) for i in json.load(f)})
    except (OSError, ValueError, TypeError):
        return []


def _hold(indexes) -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = HELD + ".tmp"
    with open(tmp, "w") as f:
        json.dump(sorted(set(indexes)), f)
    os.replace(tmp, HELD)


def _record(group: str, w: Wanted, backends) -> dict:
    """What a write of ``w`` puts in the kernel, as the ``ready`` record says it (JSON types)."""
    return {"table": K.table_name(group), "bridge": w.bridge, "doors": [d.__dict__ for d in w.doors],
            "backends": [b.address for b in backends], "names": [b.name for b in backends],
            "held": held(), "drained": os.path.exists(DRAINED)}


def written() -> dict | None:
    """The record of the last write (by the running agent or an exec'd verb), None before the first."""
    try:
        with open(READY) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def up_to_date(group: str, w: Wanted) -> bool:
    """Whether the last write already put in the kernel what ``w`` (and the holds) ask for."""
    last = written()
    if last is None:
        return False
    want = _record(group, w, K.rotation(w.backends, held(), os.path.exists(DRAINED)))
    return all(last.get(k) == want[k] for k in ("table", "bridge", "doors", "backends", "names", "drained"))


def write(group: str, w: Wanted, hold=None) -> dict:
    """Write the table for ``w`` (less the held shards; drained: with no shard), the DOCKER-USER
    accepts and route_localnet, and record it (``ready``). ``hold``: the indexes to hold out from
    now on (None: keep the current holds)."""
    with _locked():
        if hold is not None:
            _hold(hold)
        backends = K.rotation(w.backends, held(), os.path.exists(DRAINED))
        for attempt in (1, 2):  # a DOCKER-USER rule may vanish between listing and deleting it
            chain = _docker_user()
            doc = K.render(group, w.bridge, w.doors, backends, docker_user=chain is not None,
                           old_handles=K.handles(group, chain) if chain else ())
            try:
                nft.apply(doc)
                break
            except nft.NftError as e:
                if attempt == 2 or e.kind != "other":
                    raise
        if any(not d.host_ip or d.host_ip.startswith("127.") for d in w.doors):
            # only now: the table's martians rule is in place before the bridge accepts 127.0.0.0/8
            try:
                nft.set_route_localnet(w.bridge, True)
            except OSError as e:
                raise TessonError(f"route_localnet on {w.bridge}: {e.strerror} (needs CAP_NET_ADMIN)") from None
        out = {**_record(group, w, backends), "docker_user": chain is not None}
        _ready(out)
    log.info("table written", table=K.table_name(group), shards=out["names"], held=out["held"])
    return out


def purge(group: str, bridge: str | None) -> dict:
    """route_localnet off first (the martians rule guards it until then), then table and accepts."""
    with _locked():
        if bridge:
            try:
                nft.set_route_localnet(bridge, False)
            except OSError:
                pass  # the bridge is gone: so is its setting
        for attempt in (1, 2):
            chain = _docker_user()
            handles = K.handles(group, chain) if chain else []
            exists = nft.listing("table", "ip", K.table_name(group)) is not None
            if not exists and not handles:
                break
            try:
                nft.apply(K.purge(group, handles, table_exists=exists), doing="removing the group's rules")
                break
            except nft.NftError as e:
                if attempt == 2 or e.kind != "other":
                    raise
    return {"table": K.table_name(group), "removed": True}


def status(group: str) -> dict:
    listing = nft.listing("table", "ip", K.table_name(group))
    if listing is None:
        return {"table": None, "doors": [], "backends": [], "names": [], "held": held(),
                "drained": os.path.exists(DRAINED)}
    got = K.read(listing)
    names = []
    last = written() or {}
    by_addr = dict(zip(last.get("backends", []), last.get("names", [])))
    names = [by_addr.get(a, a) for a in got["backends"]]
    return {"table": K.table_name(group), "doors": [d.__dict__ for d in got["doors"]], "backends": got["backends"],
            "names": names, "held": held(), "drained": os.path.exists(DRAINED)}


def probe() -> dict:
    """Check a whole table in the kernel without keeping it (``nft -c``): NAT, numgen, fib, masquerade."""
    doc = K.render("tesson-probe", "lo", [K.Door("tcp", 1, 1)], [K.Backend("probe", "192.0.2.1")], docker_user=False)
    nft.apply(doc, check_only=True, doing="checking the kernel's nftables")
    return {"kernel": True}


# -- the long-running agent ----------------------------------------------------------------------------

def hold_ports(doors) -> list[socket.socket]:
    """A bound socket on every door (never listening: DNAT takes the packets first). A door someone
    else holds fails the start with one line."""
    held: list[socket.socket] = []
    for d in doors:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if d.proto == "tcp" else socket.SOCK_DGRAM)
        if d.proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((d.host_ip or "0.0.0.0", d.host_port))
        except OSError as e:
            s.close()
            for h in held:
                h.close()
            if e.errno == errno.EADDRINUSE:
                raise TessonError(f"host port {d.host_ip or '0.0.0.0'}:{d.host_port}/{d.proto} is already in use on this "
                                  "machine (another process or group holds it): free it or publish another port") from None
            if e.errno == errno.EACCES:
                raise TessonError(f"host port {d.host_port}/{d.proto}: permission denied (a port below 1024 needs "
                                  "CAP_NET_BIND_SERVICE)") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise TessonError(f"host address {d.host_ip} is not an address of this machine") from None
            raise
        held.append(s)
    return held


DOWN = {"die", "destroy", "pause", "health_status: unhealthy"}  # the shard is out, whatever a list says
UP = {"start", "restart", "unpause", "health_status: healthy"}
RECHECK = (0.3, 1.5)  # seconds after an event: look again (the daemon's list may lag its events)


def check_other_tables(group: str, doors) -> None:
    """A host port another table ``tesson-*`` still DNATs (a group whose containers were removed
    without ``tesson stop --purge``) fails the start with one line naming it."""
    listing = nft.listing("tables") or {}
    mine = {(d.proto, d.host_port) for d in doors}
    for t in listing.get("nftables", []):
        name = (t.get("table") or {}).get("name", "")
        if t.get("table", {}).get("family") != K.FAMILY or not name.startswith(K.TABLE_PREFIX) or name == K.table_name(group):
            continue
        theirs = {(d.proto, d.host_port) for d in K.read(nft.listing("table", "ip", name) or {})["doors"]}
        clash = sorted(mine & theirs)
        if clash:
            proto, port = clash[0]
            other = name[len(K.TABLE_PREFIX):]
            raise TessonError(f"host port {port}/{proto} is still published by the kernel table {name} (group {other}): "
                              f"tesson stop -g {other} --purge, or as root 'nft delete table ip {name}'")


def _events(client, group: str, q: queue.Queue) -> None:
    from tesson.labels import GROUP

    while True:
        log.debug("following the daemon's events", group=group)
        try:
            for ev in client.events(decode=True, filters={"type": ["container"], "label": [f"{GROUP}={group}"]}):
                action = ev.get("Action") or ev.get("status") or ""
                log.debug("event", action=action, container=((ev.get("Actor") or {}).get("Attributes") or {}).get("name"))
                if action in EVENTS or action.startswith("health_status"):
                    q.put((action, ev.get("id") or (ev.get("Actor") or {}).get("ID") or ""))
        except Exception as e:  # the daemon went away for a moment: check the state and listen again
            log.warning("event stream lost", error=str(e))
        q.put(("reconnect", ""))
        time.sleep(1.0)


def run(group: str) -> int:
    """Hold the ports, write the table, then follow the events (see the module's docstring).

    A ``die`` event comes before the daemon's container list says the shard exited, so the ids of
    shards an event said are down are kept out of rotation until an event says they are up; and the
    state is read again a moment after each event, until it agrees."""
    from tesson import docker_client

    client = docker_client.connect()
    os.makedirs(STATE_DIR, exist_ok=True)
    for path in (READY, DRAINED):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    w = wanted(client, group)
    sockets = hold_ports(w.doors)  # noqa: F841 - held for the agent's life
    check_other_tables(group, w.doors)
    write(group, w)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the rules stay; nft's transaction is whole or nothing
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_events, args=(client, group, q), daemon=True).start()
    down: set[str] = set()
    rechecks: list[float] = []
    while True:
        now = time.monotonic()
        wait = min([RESYNC] + [max(0.0, t - now) for t in rechecks])
        try:
            items = [q.get(timeout=wait)]
        except queue.Empty:
            items = []
        while not q.empty():  # a burst of events: one rewrite
            items.append(q.get_nowait())
        now = time.monotonic()
        rechecks = [t for t in rechecks if t > now]
        for action, cid in items:
            if action in DOWN:
                down.add(cid)
            elif action in UP:
                down.discard(cid)
        if items:
            rechecks = sorted(set(rechecks) | {now + d for d in RECHECK})
        try:
            w = wanted(client, group, down)
        except Exception as e:
            log.warning("could not read the group's state", error=str(e))
            continue
        if up_to_date(group, w):
            continue
        try:
            write(group, w)
        except TessonError as e:
            log.error("could not write the table", error=str(e))


def _ready(wrote: dict) -> None:
    tmp = READY + ".tmp"
    with open(tmp, "w") as f:
        json.dump(wrote, f)
    os.replace(tmp, READY)


def parse_out(text: str) -> list[int]:
    """``--out 3,4`` as indexes; TessonError for anything else."""
    try:
        out = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TessonError(f"--out {text!r}: expected shard indexes like 3,4") from None
    if any(i < 0 for i in out):
        raise TessonError(f"--out {text!r}: a shard index is never negative")
    return out


def main(args) -> int:
    group = args.group
    if args.action != "probe":
        from tesson import names

        names.validate_group(group)
    if args.action == "run":
        return run(group)
    if args.action == "probe":
        out = probe()
    elif args.action == "status":
        out = status(group)
    elif args.action == "purge":
        bridge = None
        try:
            from tesson import docker_client
            from tesson.names import network_name

            client = docker_client.connect()
            nets = [n for n in client.networks(names=[network_name(group)]) if n.get("Name") == network_name(group)]
            bridge = "br-" + nets[0]["Id"][:12] if nets else None
        except TessonError:
            pass
        out = purge(group, bridge)
    else:
        hold = parse_out(getattr(args, "out", None) or "") if args.action == "sync" else None
        client = _client()
        last = written() or {}
        known = [K.Door(**d) for d in last["doors"]] if last.get("table") == K.table_name(group) and last.get("doors") else None
        try:
            w = wanted(client, group, doors=known)
        except OSError as e:
            raise TessonError(f"the daemon's state: {e.strerror or e}") from None
        if args.action == "drain":
            os.makedirs(STATE_DIR, exist_ok=True)
            open(DRAINED, "w").close()
        before = status(group)["backends"]  # what the kernel had (a table deleted by hand: none)
        out = {**write(group, w, hold=hold), "before": before}  # sync: the holds are what --out says
    sys.stdout.write(json.dumps(out) + "\n")
    return 0
