"""The kernel front door's table as its agent keeps it: what the daemon wants in rotation, what
scale and update hold out, what was written last, and writing it (one transaction, :mod:`kernel_rules`).

Used by ``tesson kernel-agent`` (:mod:`tesson.commands.kernel_agent`) in the ``GROUP-lb`` container:
by the long-running agent and by the verbs exec'd in it (``sync``, ``drain``, ``status``,
``purge``). Its state lives in :data:`STATE_DIR` of that container:

- ``ready``: the record of the last write, by whoever made it (the table, bridge, doors, the
  backends and their names, the holds, drained or not). ``run`` waits for it; the running agent
  compares the daemon's state with it (:func:`up_to_date`) rather than with what it wrote itself,
  so an exec'd write is never undone by mistake nor missed.
- ``held``: the shard indexes the last ``sync --out`` holds out of rotation (see *Held shards* in
  :mod:`tesson.commands.kernel_agent`); every write leaves them out (:func:`kernel_rules.rotation`).
- ``listening``: the ids of the containers found accepting connections (:mod:`kernel_listen`);
  every write leaves out a shard without a Docker healthcheck that is not in it (:func:`shards`).
- ``drained``: ``stop`` took every shard out until the agent starts again.
- ``lock``: writers take turns on it, so an exec'd write never interleaves with the agent's own.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tesson import log, nft
from tesson.errors import TessonError
from tesson.frontend import kernel_rules as K

STATE_DIR = "/run/tesson-agent"
READY = STATE_DIR + "/ready"
DRAINED = STATE_DIR + "/drained"
HELD = STATE_DIR + "/held"  # JSON list of the shard indexes a scale or update holds out of rotation
LISTENING = STATE_DIR + "/listening"  # JSON list of the container ids found accepting on every TCP door
LOCK = STATE_DIR + "/lock"


@contextmanager
def _locked() -> Iterator[None]:
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# -- what should be -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Waiting:
    """A running shard left out because it does not listen yet: its index, backend and container id."""

    index: int
    backend: K.Backend
    cid: str


class Wanted:
    """The group as the daemon has it: doors (from the group's labels), bridge, the shards to put in
    rotation as ``(index, Backend)`` (unless held: :func:`kernel_rules.rotation`), the running
    shards that wait until they listen (:class:`Waiting`), and every shard container's state by id."""

    def __init__(self, doors: list[K.Door], bridge: str, backends: list[tuple[int, K.Backend]],
                 waiting: list[Waiting] | None = None, states: dict[str, str] | None = None) -> None:
        self.doors, self.bridge, self.backends = doors, bridge, backends
        self.waiting = waiting or []
        self.states = states or {}

    def admitted(self, ids: Collection[str]) -> Wanted:
        """The same, with the waiting shards of container ids ``ids`` found listening (admitted)."""
        moved = [(x.index, x.backend) for x in self.waiting if x.cid in ids]
        return Wanted(self.doors, self.bridge, sorted(self.backends + moved, key=lambda b: b[0]),
                      [x for x in self.waiting if x.cid not in ids], self.states)


def has_healthcheck(status: str) -> bool:
    """Whether the daemon's list shows a Docker healthcheck in a container's ``Status``."""
    return any(m in status for m in ("(healthy)", "(unhealthy)", "(health: "))


def shards(found: list[dict], group: str, net_name: str, down: Collection[str] = frozenset(),
           listening: Collection[str] | None = None) -> tuple[list[tuple[int, K.Backend]], list[Waiting]]:
    """Who may be in rotation, from the daemon's container list (pure): ``(admitted, waiting)``.

    A shard is admitted when it is the group's ``GROUP-INDEX``, running on ``net_name`` with an
    address, not in ``down`` (ids an event said are down, whatever the list says), not paused, and:
    healthy when it has a Docker healthcheck (``starting`` and ``unhealthy`` are out); else, when
    ``listening`` is given (the group has a TCP door), its id is in it; one that is not waits
    (:mod:`kernel_listen` checks it). ``listening`` None: no check (UDP-only doors)."""
    from tesson.labels import ROLE, SHARD

    backends, waiting = [], []
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
        if not address:
            continue
        if listening is not None and not has_healthcheck(status) and c.get("Id") not in listening:
            waiting.append(Waiting(index, K.Backend(name, address), c.get("Id") or ""))
        else:
            backends.append((index, K.Backend(name, address)))
    return sorted(backends, key=lambda b: b[0]), sorted(waiting, key=lambda x: x.index)


def wanted(client: Any, group: str, down: Collection[str] = frozenset(), doors: list[K.Door] | None = None) -> Wanted:
    """``down``: ids of containers an event said are down (left out whatever the list says).
    ``doors``: the group's doors when a write already read them from its labels (which never
    change); parsing them again imports docker-py, most of an exec'd ``sync``'s time. The shards
    found listening are read from :data:`LISTENING`."""
    from tesson.labels import GROUP, PORTS, ROLE
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
    checked = listening() if any(d.proto == "tcp" for d in doors) else None
    backends, waiting = shards(found, group, net_name, down, checked)
    states = {c.get("Id") or "": c.get("State") or "" for c in found if (c.get("Labels") or {}).get(ROLE) == "shard"}
    return Wanted(doors, bridge, backends, waiting, states)


def client() -> Any:
    """A light client on the local socket (the agent's own: tesson.engine_lite, the two listings
    :func:`wanted` reads without importing docker-py and requests, a third of an exec'd ``sync``'s
    time), else docker-py's."""
    from tesson import engine_lite

    path = engine_lite.local_socket()
    if path is not None:
        return engine_lite.Client(path)
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


def _hold(indexes: Iterable[int]) -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = HELD + ".tmp"
    with open(tmp, "w") as f:
        json.dump(sorted(set(indexes)), f)
    os.replace(tmp, HELD)


def listening() -> set[str]:
    """The ids of the containers found accepting on every TCP door since they started."""
    try:
        with open(LISTENING) as f:
            return {str(i) for i in json.load(f)}
    except (OSError, ValueError, TypeError):
        return set()


def note_listening(add: Iterable[str] = (), drop: Iterable[str] = (), reset: bool = False) -> set[str]:
    """Record containers found listening (``add``), forget dead ones (``drop``), or all (``reset``,
    the agent's start: every shard is checked again). Under the writers' lock; returns the set."""
    with _locked():
        now = set() if reset else listening()
        now = (now | set(add)) - set(drop)
        tmp = LISTENING + ".tmp"
        with open(tmp, "w") as f:
            json.dump(sorted(now), f)
        os.replace(tmp, LISTENING)
    return now


def _record(group: str, w: Wanted, backends: list[K.Backend]) -> dict:
    """What a write of ``w`` puts in the kernel, as the ``ready`` record says it (JSON types);
    ``waiting``: the running shards left out until they listen."""
    return {"table": K.table_name(group), "bridge": w.bridge, "doors": [d.__dict__ for d in w.doors],
            "backends": [b.address for b in backends], "names": [b.name for b in backends],
            "held": held(), "drained": os.path.exists(DRAINED), "waiting": [x.backend.name for x in w.waiting]}


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
    return all(last.get(k) == want[k] for k in ("table", "bridge", "doors", "backends", "names", "drained", "waiting"))


def write(group: str, w: Wanted, hold: Iterable[int] | None = None) -> dict:
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
        record_written(out)
    log.info("table written", table=K.table_name(group), shards=out["names"], held=out["held"])
    return out


def purge(group: str, bridge: str | None) -> dict:
    """route_localnet off first (the martians rule guards it until then), then table and accepts.
    Says what there was: ``{"table", "removed": whether the table existed, "rules": how many
    DOCKER-USER accepts went}``."""
    exists, handles = False, []
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
    return {"table": K.table_name(group), "removed": exists, "rules": len(handles)}


def status(group: str) -> dict:
    listing = nft.listing("table", "ip", K.table_name(group))
    if listing is None:
        return {"table": None, "doors": [], "backends": [], "names": [], "held": held(),
                "drained": os.path.exists(DRAINED), "waiting": (written() or {}).get("waiting") or []}
    got = K.read(listing)
    last = written() or {}
    by_addr = dict(zip(last.get("backends", []), last.get("names", [])))
    names = [by_addr.get(a, a) for a in got["backends"]]
    return {"table": K.table_name(group), "doors": [d.__dict__ for d in got["doors"]], "backends": got["backends"],
            "names": names, "held": held(), "drained": os.path.exists(DRAINED), "waiting": last.get("waiting") or []}


def probe() -> dict:
    """Check a whole table in the kernel without keeping it (``nft -c``): NAT, numgen, fib, masquerade."""
    doc = K.render("tesson-probe", "lo", [K.Door("tcp", 1, 1)], [K.Backend("probe", "192.0.2.1")], docker_user=False)
    nft.apply(doc, check_only=True, doing="checking the kernel's nftables")
    return {"kernel": True}


# -- the long-running agent ----------------------------------------------------------------------------


def record_written(wrote: dict) -> None:
    tmp = READY + ".tmp"
    with open(tmp, "w") as f:
        json.dump(wrote, f)
    os.replace(tmp, READY)
