"""``tesson kernel-agent VERB --group GROUP`` (hidden): the kernel front door's agent, run in the
``GROUP-lb`` container (host network, CAP_NET_ADMIN, the daemon's socket).

- ``run``: hold every host port of the group with a bound socket, write the table, say so
  (``/run/tesson-agent/ready``), then follow the daemon's events for the group's containers and
  rewrite the table whenever the set of running, healthy, listening shards changes. Every 30 s it
  also checks the daemon's state, in case an event was missed. SIGTERM ends it; the rules stay.
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

Listening shards (:mod:`tesson.frontend.kernel_listen`): a running shard without a Docker
healthcheck enters the rotation only once it accepts a TCP connection on every TCP door's port,
whoever writes: at its ``start`` event, at the agent's start and periodic check, when a hold is let
go. The agent's start and an exec'd ``sync`` try each waiting shard once before they write; the
running agent then gives each shard still waiting a prober thread (every 0.1 s for 30 s, then
every 2 s, the shard out meanwhile), which wakes the event loop when it listens. Once found
listening, a container stays admitted until it dies (``die``, ``destroy``: forgotten, so its next
start is checked again); the agent's start forgets them all. Held shards are checked too, so a
hold let go admits at once a shard that listens already. UDP-only groups: no check.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import signal
import socket
import sys
import time

from tesson import log, nft
from tesson.errors import TessonError
from tesson.frontend import kernel_listen as listen
from tesson.frontend import kernel_rules as K
from tesson.frontend import kernel_table as T
from tesson.frontend.kernel_table import status, write, written

RESYNC = 30.0  # seconds between checks of the daemon's state when no event came
REPLAY = 1.0  # seconds of events before a subscription the daemon replays (tesson.docker_events)
EVENTS = {"start", "restart", "die", "stop", "kill", "destroy", "pause", "unpause", "oom",
          "health_status", "health_status: healthy", "health_status: unhealthy", "connect", "disconnect"}


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
FORGET = {"die", "destroy"}  # its process is gone: found listening no more, its next start is checked again
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


def admit(w: T.Wanted) -> T.Wanted:
    """Try every shard of ``w`` that waits to listen once (all at once); those that accept are
    recorded (:data:`kernel_table.LISTENING`) and admitted."""
    if not w.waiting:
        return w
    ok = listen.probe_once({x.cid: x.backend.address for x in w.waiting}, listen.tcp_ports(w.doors))
    if ok:
        T.note_listening(add=ok)
    return w.admitted(ok)


def follow_probes(w: T.Wanted, probers: dict[str, listen.Prober], q: queue.Queue) -> None:
    """One prober per shard that waits to listen (a new one when its address changed); those whose
    shard no longer waits (down, gone, paused) are cancelled."""
    waiting = {x.cid: x for x in w.waiting}
    for cid in list(probers):
        x = waiting.get(cid)
        if x is None or x.backend.address != probers[cid].address:
            probers.pop(cid).cancel()
    for cid, x in waiting.items():
        if cid not in probers:
            p = listen.Prober(cid, x.backend.name, x.backend.address, listen.tcp_ports(w.doors), q)
            probers[cid] = p
            p.start()


def run(group: str) -> int:
    """Hold the ports, write the table, then follow the events (see the module's docstring).

    A ``die`` event comes before the daemon's container list says the shard exited, so the ids of
    shards an event said are down are kept out of rotation until an event says they are up; and the
    state is read again a moment after each event, until it agrees. Probers (shards that do not
    listen yet) report on the same queue as the events."""
    from tesson import docker_client, docker_events
    from tesson.labels import GROUP

    client = docker_client.connect()
    os.makedirs(T.STATE_DIR, exist_ok=True)
    for path in (T.READY, T.DRAINED):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    T.note_listening(reset=True)  # a restart may have missed deaths: every shard is checked again
    w = T.wanted(client, group)
    sockets = hold_ports(w.doors)  # noqa: F841 - held for the agent's life
    check_other_tables(group, w.doors)
    write(group, admit(w))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the rules stay; nft's transaction is whole or nothing
    # with replay: a shard that died and started again while the stream was broken still brings
    # its die (its admission is forgotten, so it is tried again: tesson.docker_events's hazards)
    q = docker_events.follow(client, {"type": ["container"], "label": [f"{GROUP}={group}"]},
                             lambda action: action in EVENTS or action.startswith("health_status"), replay=REPLAY)
    down: set[str] = set()
    probers: dict[str, listen.Prober] = {}
    rechecks: list[float] = []
    first = True
    while True:
        now = time.monotonic()
        wait = min([RESYNC] + [max(0.0, t - now) for t in rechecks])
        # a burst of events: one rewrite; the first pass starts at once the probers of the shards
        # the start found waiting
        items = docker_events.take(q, 0.0 if first else wait)
        first = False
        now = time.monotonic()
        rechecks = [t for t in rechecks if t > now]
        heard, forget = set(), set()
        for action, cid in items:
            if action == listen.HEARD:
                p = probers.get(cid)
                if p is not None and p.ok:  # not a prober cancelled since (the shard died)
                    del probers[cid]
                    heard.add(cid)
                continue
            if action in DOWN:
                down.add(cid)
            elif action in UP:
                down.discard(cid)
            if action in FORGET:
                forget.add(cid)
                heard.discard(cid)
                if cid in probers:
                    probers.pop(cid).cancel()
            rechecks = sorted(set(rechecks) | {now + d for d in RECHECK})
        if heard or forget:
            T.note_listening(add=heard, drop=forget)
        try:
            w = T.wanted(client, group, down)
        except Exception as e:
            log.warning("could not read the group's state", error=str(e))
            continue
        stale = {i for i in T.listening() if w.states.get(i) in ("exited", "dead")}  # a death the events missed
        if stale:
            T.note_listening(drop=stale)
        follow_probes(w, probers, q)
        if T.up_to_date(group, w):
            continue
        try:
            write(group, w)
        except TessonError as e:
            log.error("could not write the table", error=str(e))


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
        out = T.probe()
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
        out = T.purge(group, bridge)
    else:
        hold = parse_out(getattr(args, "out", None) or "") if args.action == "sync" else None
        client = T.client()
        last = written() or {}
        known = [K.Door(**d) for d in last["doors"]] if last.get("table") == K.table_name(group) and last.get("doors") else None
        from tesson.engine_lite import APIError

        try:
            w = T.wanted(client, group, doors=known)
        except (OSError, APIError) as e:  # the local socket's client (tesson.engine_lite)
            raise TessonError(f"the daemon's state: {getattr(e, 'strerror', None) or e}") from None
        if args.action == "sync":  # a shard a hold let go of enters now if it listens (else the agent's prober)
            w = admit(w)
        if args.action == "drain":
            os.makedirs(T.STATE_DIR, exist_ok=True)
            open(T.DRAINED, "w").close()
        before = status(group)["backends"]  # what the kernel had (a table deleted by hand: none)
        out = {**write(group, w, hold=hold), "before": before}  # sync: the holds are what --out says
    sys.stdout.write(json.dumps(out) + "\n")
    return 0
