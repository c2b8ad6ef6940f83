"""``tesson vip-agent run --group GROUP --vip ADDRESS...`` (hidden): Gorb dr's VIP agent, run in the
``GROUP-vip`` container (the tesson image, the daemon's socket, no network, no capability; see
:mod:`tesson.frontend.vip_agentctl`).

Docker gives a container a new network namespace at every start, so the service address (VIP) a
dr shard carries on its loopback is gone after any start Docker makes by itself: a restart by the
shard's policy after a crash, or a ``docker restart`` that bypasses tesson. The agent follows the
daemon's ``start`` events for the group's shards (:mod:`tesson.docker_events`) and runs the VIP
step on each (:func:`tesson.frontend.macvlan.loopback_steps`: a one-shot container of the image in
the shard's namespace holding NET_ADMIN alone, which adds the addresses unless they are there).

What it knows lives in memory only: the starts it has seen to, as (container id, ``StartedAt``).
A start earlier than its own container's creation counts as seen to: tesson creates the agent
after putting the VIPs on every running shard (``run``, ``repair``), and once the agent is ready
checks that no shard started again in between. Besides each event, it reads the state (each
running shard's inspect) whenever it subscribes to the events, after a step that failed (again
:data:`RETRY` seconds later) and every :data:`RESYNC` seconds: a start it has not seen to gets the
step. It writes ``/run/tesson-vip/ready`` after its first pass, once it follows the events: what
tesson waits for. SIGTERM ends it once a step under way is finished (and its container removed).

It logs each address it puts back (``put the service address back``); a step that fails (the
shard exited meanwhile, the image is gone) is a warning, tried again later.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from tesson import labels as L
from tesson import log
from tesson.container import Container, daemon_ns
from tesson.frontend.vip_agentctl import READY, STATE_DIR

RESYNC = 30.0  # seconds between readings of the state when no event came
RETRY = 2.0  # seconds after a step that failed: look again
REPLAY = 1.0  # seconds of events before the subscription the daemon replays (tesson.docker_events)


class Keeper:
    """The agent's memory and its one pass: which shard starts have the VIPs, and the step for
    those that have not. ``client``: docker-py's APIClient."""

    def __init__(self, client, group: str, vips: list[str], image: str, made_ns: int, labels: dict) -> None:
        self.client, self.group, self.vips, self.image = client, group, sorted(set(vips)), image
        self.made_ns = made_ns  # the agent's container was created then: earlier starts are tesson's
        self.labels = labels  # the step containers' labels (the group's)
        self.done: dict[str, str] = {}  # container id -> StartedAt of the start whose namespace has the VIPs

    def running_shards(self) -> set[str]:
        """The ids of the group's running shards; what is remembered of any other goes."""
        found = self.client.containers(filters={**L.filters(group=self.group, role=L.ROLE_SHARD), "status": ["running"]})
        ids = {c["Id"] for c in found}
        self.done = {cid: started for cid, started in self.done.items() if cid in ids}
        return ids

    def due(self, ids) -> dict[str, tuple[str, str]]:
        """Of these containers, the running ones whose current start is not seen to:
        name -> (id, StartedAt)."""
        from tesson.docker_client import unless_gone

        out = {}
        for cid in ids:
            ins = unless_gone(self.client.inspect_container, cid)
            c = Container(ins or {})
            if ins is None or not c.running or self.done.get(c.id) == c.started_at:
                continue
            if 0 < daemon_ns(c.started_at) <= self.made_ns:
                self.done[c.id] = c.started_at  # started before the agent was made: tesson saw to it
                continue
            out[c.name] = (c.id, c.started_at)
        return out

    def step(self, todo: dict[str, tuple[str, str]]) -> bool:
        """The VIP step for ``todo`` (:meth:`due`'s); True when every one succeeded."""
        from tesson.frontend.macvlan import loopback_steps

        outcome = loopback_steps(self.client, self.image, {n: cid for n, (cid, _) in todo.items()}, self.vips, self.labels)
        ok = True
        for name, result in outcome.items():
            if isinstance(result, str):
                ok = False
                log.warning("could not put the service address on the shard's loopback", shard=name, error=result)
                continue
            cid, started = todo[name]
            self.done[cid] = started  # that start's namespace (a newer start comes as an event)
            if result:
                log.info("put the service address back on the shard's loopback", shard=name, vips=",".join(self.vips))
        return ok


def run(group: str, vips: list[str]) -> int:
    """Follow the events and keep the VIPs on every running shard (see the module's docstring)."""
    from tesson import default_image, docker_client, docker_events
    from tesson.errors import TessonError
    from tesson.names import vip_agent_name

    if not vips:
        raise TessonError("vip-agent run needs at least one --vip ADDRESS")
    import ipaddress

    for v in vips:  # they go into the loopback step's script: addresses only
        try:
            ipaddress.IPv4Address(v)
        except ValueError:
            raise TessonError(f"vip-agent run: --vip {v!r} is not an IPv4 address") from None
    client = docker_client.connect()
    os.makedirs(STATE_DIR, exist_ok=True)
    try:
        os.unlink(READY)
    except FileNotFoundError:
        pass
    me = Container(client.inspect_container(vip_agent_name(group)))
    keeper = Keeper(client, group, vips, default_image(), daemon_ns(me.created), {**me.labels, L.GROUP: group})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # in the main thread: after the step under way
    q = docker_events.follow(client, {"type": ["container"], **L.filters(group=group, role=L.ROLE_SHARD)},
                             lambda action: action == "start", replay=REPLAY)
    ready = False
    next_pass = None  # monotonic time of the next reading of the whole state (None: at the subscription)
    while True:
        items = docker_events.take(q, RESYNC if next_pass is None else next_pass - time.monotonic())
        ids = {cid for action, cid in items if action == "start" and cid}
        full = any(action in (docker_events.SUBSCRIBED, docker_events.RECONNECT) for action, _ in items) or \
            (next_pass is not None and time.monotonic() >= next_pass)
        if not ready and not full:
            continue  # the first pass waits for the subscription
        ok = read = False
        try:
            if full:
                ids |= keeper.running_shards()
            read = True
            todo = keeper.due(ids)
            ok = keeper.step(todo) if todo else True
        except Exception as e:  # the daemon went away for a moment: the stream's marker brings us back
            log.warning("could not read the group's shards", error=str(e))
        if full or not ok:
            next_pass = time.monotonic() + (RESYNC if ok else RETRY)
        if full and read and not ready:
            open(READY, "w").close()
            ready = True
            log.info("following the group's shards", group=group, vips=",".join(keeper.vips), seen_to=len(keeper.done))


def main(args) -> int:
    from tesson import names

    names.validate_group(args.group)
    return run(args.group, list(args.vip or []))
