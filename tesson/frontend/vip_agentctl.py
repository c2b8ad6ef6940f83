"""Gorb dr: the service address (VIP) on every shard's loopback, whoever started the shard. A
mixin of :class:`tesson.frontend.gorb.GorbFrontend` (its ``services``: the VIPs).

Docker gives a container a new network namespace at every start, so the VIP is put on a shard's
``lo`` after each start (the step: :func:`tesson.frontend.macvlan.loopback_steps`):

- after every start tesson makes itself (``run``, ``start``, ``restart``, ``repair``, ``scale``,
  ``update``: the ``after_start`` hook), synchronously, before the shard joins Gorb;
- after every start Docker makes by itself (a restart by the ``unless-stopped`` policy after a
  crash, ``docker restart``): by the group's *VIP agent*, ``GROUP-vip``, a container of the tesson
  image running ``tesson vip-agent run --group GROUP --vip VIP...`` (:mod:`tesson.commands.vip_agent`),
  which follows the daemon's ``start`` events for the group's shards and runs the step on each.
  It has the daemon's socket and nothing else: no network (``none``), every capability dropped, no
  new privileges, restart ``unless-stopped``; the steps it starts hold NET_ADMIN in the shard's
  namespace only, as tesson's do. Measured on Docker 20.10 (2 cores): the VIP is on the shard's
  ``lo`` 0.2 s after Docker started it again (``State.StartedAt``), nearly all of it the step's
  container (create, start, wait, remove: 0.2-0.27 s alone). Its cost: one more container per dr
  group, a Python process of ~23 MiB (measured) that sleeps on the event stream, and a step container per
  start (tesson's own starts get two: its own and the agent's).

``run`` makes the agent once every shard has its VIP (and waits until it follows the events),
``repair`` (so ``start`` and ``restart``) recreates a missing or stopped one, or one that keeps
other VIPs, after checking every running shard itself; the starts in between are looked at again
once the agent is ready (a shard that started then gets the step from tesson). ``stop`` stops it
first, ``stop --purge`` removes it with the group's containers, and then any step container it
left (one it was running when it was killed). ``ps`` says whether it runs.

Why an agent, and not (measured on Docker 20.10):

- the shard in the network namespace of a holder container (``NetworkMode: container:HOLDER``,
  Kubernetes' pause container) that carries the VIP: the VIP does survive the shard's restarts,
  but a holder that restarts leaves the shard running in a namespace with nothing but ``lo`` (no
  macvlan interface: cut off until recreated), Docker refuses exposed ports on such a shard, every
  verb would have to make and start the holder before the shard, and a daemon restart would have
  to start them in order;
- NET_ADMIN for the shard, dropped by a wrapper before the application starts: processes ``docker
  exec`` starts in the shard get the container's capabilities, the wrapper would have to be in
  every image, and the point of the step (the application never holds NET_ADMIN) would be lost;
- nothing in Docker runs a hook at a container's start, and no namespaced sysctl or network
  option makes a namespace accept packets for an address it does not have.

Hazards: between Docker's restart of a shard and the agent's step (~0.2 s) IPVS may send the
shard connections it drops; while the agent is down (``ps`` says so, ``repair`` recreates it) a
restarted shard stays without its VIP. The step runs twice after a start of tesson's own (its own
and the agent's): the script forgives a race and leaves an address that is there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tesson import labels as L
from tesson import log
from tesson.container import Container
from tesson.docker_client import create_and_start, docker_socket, explain, remove_container, unless_gone
from tesson.engine_lite import DEFAULT_SOCKET
from tesson.errors import TessonError
from tesson.frontend import macvlan as MV
from tesson.names import vip_agent_name

if TYPE_CHECKING:
    from tesson.frontend import Context
    from tesson.frontend.gorb_services import VService

STATE_DIR = "/run/tesson-vip"  # in the agent's container (tesson.commands.vip_agent)
READY = STATE_DIR + "/ready"  # written once the agent follows the events
STOP_TIMEOUT = 10  # seconds the agent gets to finish a step before it is killed


class VipControl:
    """The VIPs on the shards' loopback: tesson's own step and the agent. ``_vip_seen``: the
    starts (container id, ``StartedAt``) whose namespace this command saw to."""

    _vip_seen: set[tuple[str, str]]

    def services(self, ctx: Context) -> list[VService]:
        raise NotImplementedError

    def vips(self, ctx: Context) -> list[str]:
        return sorted({v.host for v in self.services(ctx)})

    def put_vips(self, ctx: Context, inspects: dict[int, dict]) -> list[str]:
        """The VIPs on the loopback of these shards (index -> inspect), each start seen to already
        in this command skipped; returns the names of the shards that lacked them."""
        from tesson import default_image

        todo = {ctx.shard_name(i): Container(ins) for i, ins in inspects.items()}
        todo = {n: c for n, c in todo.items() if (c.id, c.started_at) not in self._vip_seen}
        if not todo:
            return []
        added = MV.put_vip_on_loopback(ctx.docker, default_image(), {n: c.id for n, c in todo.items()},
                                       self.vips(ctx), ctx.base_labels(L.ROLE_LO_STEP))
        self._vip_seen.update((c.id, c.started_at) for c in todo.values())
        return added

    # -- the agent --------------------------------------------------------------------------------

    def agent_body(self, ctx: Context, image: str) -> dict:
        vips = [arg for v in self.vips(ctx) for arg in ("--vip", v)]
        return {
            "Image": image,
            "Entrypoint": ["tesson"],
            "Cmd": ["--log-level", "info", "vip-agent", "run", "--group", ctx.group, *vips],
            "Env": [f"DOCKER_HOST=unix://{DEFAULT_SOCKET}", f"TESSON_IMAGE={image}"],  # its steps: this image
            "Labels": {**ctx.labels, L.ROLE: L.ROLE_VIP_AGENT, L.GROUP: ctx.group},
            "HostConfig": {
                "NetworkMode": "none",
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "Binds": [f"{docker_socket()}:{DEFAULT_SOCKET}"],
                "RestartPolicy": {"Name": "unless-stopped"},
            },
        }

    def start_agent(self, ctx: Context, record: bool) -> None:
        """Make ``GROUP-vip`` and wait until it follows the events (``record``: in ``ctx.undo``;
        else a failed one is removed at once), then give the step to every running shard that
        started again since this command saw to it (before the agent's time)."""
        from tesson import default_image
        from tesson.frontend import nginx_io as nio

        client, name, image = ctx.docker, vip_agent_name(ctx.group), default_image()
        def start(cid: str) -> None:
            try:
                client.start(cid)
            except Exception as e:
                raise TessonError(f"VIP agent {name} could not start: {explain(e)}") from None
            nio.wait_ready(client, cid, name, READY, what="VIP agent")

        cid, _ = create_and_start(client, self.agent_body(ctx, image), name, f"VIP agent {name}", start,
                                  ctx.undo if record else None)
        log.info("VIP agent started", container=name, id=cid[:12], vips=",".join(self.vips(ctx)))
        seen = {cid_ for cid_, _ in self._vip_seen}
        again = {}
        for index in [s.index for s in ctx.shards]:
            ins = unless_gone(client.inspect_container, ctx.shard_name(index))
            if ins is not None and Container(ins).running and ins["Id"] in seen:
                again[index] = ins
        self.put_vips(ctx, again)

    def agent_repair(self, ctx: Context) -> list[str]:
        """``repair``: a running agent that keeps these VIPs is left alone; any other (missing,
        stopped, restarting, other VIPs) is made again. Call after :meth:`put_vips` on every
        running shard."""
        from tesson import default_image
        from tesson.pull import ensure_image

        name = vip_agent_name(ctx.group)
        found = unless_gone(ctx.docker.inspect_container, name)
        if found is not None:
            c = Container(found)
            if c.running and self._agent_vips(found) == self.vips(ctx):
                return []
            was = "keeping other addresses" if c.running else (c.state or "not running")
            try:
                remove_container(ctx.docker, found["Id"])
            except Exception as e:
                raise TessonError(f"VIP agent {name} ({was}) could not be removed: {explain(e)}") from None
        else:
            was = "missing"
        ensure_image(ctx.docker, default_image(), "missing")
        self.start_agent(ctx, record=False)
        return [f"recreated VIP agent {name} (it was {was})"]

    @staticmethod
    def _agent_vips(inspect: dict) -> list[str]:
        cmd = list((inspect.get("Config") or {}).get("Cmd") or [])
        return sorted(cmd[i + 1] for i, arg in enumerate(cmd[:-1]) if arg == "--vip")

    def stop_agent(self, ctx: Context) -> None:
        """``stop``, first: no step is started on the shards while they stop."""
        for c in self._agents(ctx):
            try:
                unless_gone(ctx.docker.stop, c.id, timeout=min(ctx.timeout, STOP_TIMEOUT))
            except Exception as e:
                log.warning("could not stop the VIP agent first", error=explain(e))

    def purge_steps(self, ctx: Context) -> list[str]:
        """``stop --purge``, last: the step containers the agent left (it was killed during one)."""
        errors = []
        for c in ctx.docker.containers(all=True, filters=L.filters(group=ctx.group, role=L.ROLE_LO_STEP)):
            try:
                remove_container(ctx.docker, c["Id"])
            except Exception as e:
                errors.append(f"{c['Id'][:12]}: {explain(e)}")
        return errors

    def agent_state(self, ctx: Context) -> dict:
        """``ps``: ``{"container": "web-vip", "state": "running"}`` ("missing" when there is none)."""
        agents = self._agents(ctx)
        return {"container": vip_agent_name(ctx.group), "state": agents[0].state if agents else "missing"}

    @staticmethod
    def _agents(ctx: Context) -> list[Any]:
        return ctx.state.others_in_role(L.ROLE_VIP_AGENT) if ctx.state is not None else []
