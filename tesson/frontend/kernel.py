"""``--lb kernel``: the group's ports balanced by the kernel (nftables DNAT), no proxy on the data path.

``run -p HOST:PORT...`` makes, in this order (each recorded in ``ctx.undo``):

- the network ``tesson-GROUP`` (as the nginx balancer does; the shards join it, publishing nothing);
- the shards;
- ``GROUP-lb``, the *agent*: the tesson image running ``tesson kernel-agent run --group GROUP`` in
  the host's network with only CAP_NET_ADMIN (and CAP_NET_BIND_SERVICE for a host port below
  1024), the daemon's socket, restart ``unless-stopped``. It holds every host port with a bound
  socket (so no other process or group can take one), writes the table ``ip tesson-GROUP`` (see
  :mod:`kernel_rules`) with the running, healthy shards in rotation, turns ``route_localnet`` on
  for the group's bridge only, then follows the daemon's events for the group's containers and
  rewrites the table (one transaction) whenever a shard dies, stops, is removed, turns unhealthy or
  comes back. A shard without a Docker healthcheck comes in only once it accepts connections on
  the group's TCP ports (:mod:`kernel_listen`: DNAT cannot retry another shard as nginx does).
  The run waits until the agent says it wrote the table, or fails with its one line (not for the
  shards that do not listen yet: they come in by themselves).

The rules are the data path: they stay in force when the agent stops or dies (Docker restarts it;
at start it writes the table again from the daemon's state).

``scale`` and ``update`` take shards out of the door and put them back through the running agent
(``kernel-agent sync --out I,J``, exec'd in it: the indexes of ``ctx.draining``): the table is
rewritten without them before the call returns, so new connections go elsewhere at once while
the open ones keep their conntrack entry; and the agent keeps them out, whatever the daemon's
events say, until a ``sync`` without them (a shard that stops leaves the rotation either way).
New shards of a ``scale`` up are held out the same way from before they are created, so none
gets a connection before the change found it healthy. Once let go, a shard without a Docker
healthcheck enters when it listens, and ``add_backends`` waits for that (up to
``kernel_listen.BOUND``). Without a running agent the change is refused (``tesson repair``
brings the agent back first).

``stop`` asks the agent to take every shard out of rotation (and keep them out), then stops it
with the rest; ``stop --purge`` removes the table and the DOCKER-USER accepts (in a one-off
container of the image: the daemon's host is where the rules are), then the network. ``repair``
recreates a missing or dead agent, or has the running one write the table again. ``ps`` asks the
running agent what the kernel has (``nft -j list table``), and which shards are held out or not
listening yet.

Needs: fixed host ports (``-p 8080:80``; no ephemeral port or range), tcp or udp, IPv4.

The agent's container (body, start, exec'd verbs, one-offs) is :mod:`kernel_agentctl`; what it
keeps and writes, :mod:`kernel_table`; its rules, :mod:`kernel_rules`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tesson import DEFAULT_IMAGE, default_image, log
from tesson import labels as L
from tesson.docker_client import explain as _explain
from tesson.docker_client import remove_container as _remove_container
from tesson.docker_client import unless_gone
from tesson.errors import TessonError, UsageError
from tesson.frontend import Context, NotAdmitted
from tesson.frontend import kernel_listen as listen
from tesson.frontend import kernel_rules as K
from tesson.frontend import nginx as _nginx
from tesson.frontend import nginx_io as nio
from tesson.frontend.kernel_agentctl import ONEOFF_LABEL, AgentControl, docker_socket  # noqa: F401 - re-exported
from tesson.names import lb_name, network_name

if TYPE_CHECKING:
    from tesson.ports import Port
    from tesson.request import RunRequest

KIND = "kernel"
ADD_TIMEOUT = 5.0  # seconds add_backends waits for the daemon's list to show a started shard
LISTEN_TIMEOUT = listen.BOUND  # seconds add_backends waits for a shard the agent says does not listen yet


def doors_of(ports: Iterable[Port]) -> list[K.Door]:
    """``-p`` specs (tesson.ports.Port) as doors; UsageError for what the kernel door cannot publish."""
    doors: list[K.Door] = []
    for p in ports:
        if p.proto not in K.PROTOCOLS:
            raise UsageError(f"port spec {p.spec!r}: the kernel front door does tcp and udp, not {p.proto} (use --lb nginx)")
        if not p.host_port or "-" in p.host_port:
            raise UsageError(
                f"port spec {p.spec!r}: the kernel front door needs one fixed host port "
                f"(like -p 8080:{p.port}); for an ephemeral port or a range use --lb nginx")
        host_ip = "" if p.host_ip in ("", "0.0.0.0") else p.host_ip
        if host_ip and ":" in host_ip:
            raise UsageError(f"port spec {p.spec!r}: the kernel front door is IPv4 only (use --lb nginx)")
        d = K.Door(proto=p.proto, host_port=int(p.host_port), port=p.port, host_ip=host_ip)
        same = [o for o in doors if (o.proto, o.host_port) == (d.proto, d.host_port)]
        if same and same[0] != d:
            raise UsageError(f"port spec {p.spec!r}: host port {d.host_port}/{d.proto} is published twice")
        if not same:
            doors.append(d)
    return doors


class KernelFrontend(AgentControl, _nginx.NginxFrontend):
    """Shares the nginx balancer's network, shard shaping and lookups; the balancer is the agent."""

    kind = KIND
    removal_lag = 0.0  # remove_backends returns once the kernel has the table without the shards

    def __init__(self, ports: Any = (), image: str = DEFAULT_IMAGE) -> None:
        super().__init__(ports, None, image, ())
        self.doors = doors_of(self.ports)

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def from_request(cls, req: RunRequest) -> KernelFrontend:
        """The -p ports and ``--lb-image``; ``--lb-method`` and ``--lb-cpus`` (nginx's) are refused."""
        ports, opts = list(req.ports), req.frontend
        if opts.lb_method:
            raise UsageError("--lb-method is the nginx balancer's: the kernel front door spreads connections round robin (use --lb nginx)")
        if opts.lb_cpus:
            raise UsageError("--lb-cpus is the nginx balancer's: the kernel front door runs no balancer process (use --lb nginx)")
        if not ports:
            raise UsageError("--lb kernel needs at least one -p HOST_PORT:PORT (the ports the kernel publishes)")
        return cls(ports, opts.lb_image or default_image())

    @classmethod
    def from_labels(cls, labels: dict) -> KernelFrontend:
        from tesson import ports as _ports

        try:
            ports = _ports.parse(json.loads(labels.get(L.PORTS) or "[]"))
            doors_of(ports)
        except (ValueError, TypeError, TessonError):
            ports = []
        return cls(ports, labels.get(L.LB_IMAGE) or DEFAULT_IMAGE)

    def labels(self) -> dict:
        return {L.LB_IMAGE: self.image}

    # -- run ------------------------------------------------------------------------------------

    def before_shards(self, ctx: Context) -> None:
        mode = ((ctx.config or {}).get("HostConfig") or {}).get("NetworkMode")
        if mode and mode != network_name(ctx.group):
            raise UsageError(
                f"the config sets HostConfig.NetworkMode={mode!r}, but behind the kernel front door the shards "
                f"join the group's network {network_name(ctx.group)}: drop it, or use --lb none")
        self._check_image(ctx)
        self._check_other_groups(ctx)
        from tesson.docker_client import is_remote

        if not is_remote():
            nio.check_host_ports(self.ports)
        self._network = nio.make_network(ctx, record=True)

    def after_shards(self, ctx: Context) -> None:
        addresses = nio.shard_addresses(ctx)
        down = [n for n in ctx.shard_names() if not addresses.get(n)]
        if down:
            raise TessonError(f"shard{'s' if len(down) > 1 else ''} {', '.join(down)} not running after start "
                              f"(see docker logs {down[0]}): no front door made")
        # recorded first, undone last: whatever the agent wrote goes after the agent itself
        ctx.undo.add(f"kernel rules tesson-{ctx.group}", lambda: self._oneoff(ctx, "purge"))
        self._create_agent(ctx, record=True)

    # -- stop -----------------------------------------------------------------------------------

    def before_stop(self, ctx: Context) -> None:
        """Take every shard out of rotation (and keep them out), then stop the agent."""
        agents = [c for c in self._lb_containers(ctx) if c.state == "running"]
        try:
            if agents:
                self._exec(ctx, agents[0].id, "drain")
            elif not ctx.purge:  # --purge removes the rules after the containers anyway
                self._oneoff(ctx, "drain")
        except TessonError as e:
            log.warning("could not take the shards out of rotation first", error=str(e))
        for c in agents:
            try:
                ctx.docker.stop(c.id, timeout=min(ctx.timeout, 10))
            except Exception as e:
                log.warning("could not stop the kernel agent first", error=_explain(e))

    def after_stop(self, ctx: Context) -> None:
        if not ctx.purge:
            return
        self._oneoff(ctx, "purge")
        log.info("kernel rules removed", table=K.table_name(ctx.group))
        super().after_stop(ctx)

    # -- repair -----------------------------------------------------------------------------------

    def repair(self, ctx: Context, recreated: list[int]) -> list[str]:
        lines: list[str] = []
        if not nio.group_networks(ctx):
            self._network = nio.make_network(ctx, record=False)
            lines.append(f"recreated network {network_name(ctx.group)}")
        name = lb_name(ctx.group)
        agent = unless_gone(ctx.docker.inspect_container, name)
        state = (agent or {}).get("State") or {}
        if agent is None or not state.get("Running") or state.get("Restarting"):
            was = "missing" if agent is None else (state.get("Status") or "not running")
            self._check_image(ctx)
            if agent is not None:
                try:
                    _remove_container(ctx.docker, agent["Id"])
                except Exception as e:
                    raise TessonError(f"kernel agent {name} ({was}) could not be removed: {_explain(e)}") from None
            wrote = self._create_agent(ctx, record=False)
            lines.append(f"recreated kernel agent {name} (it was {was}): {len(wrote.get('backends', []))} shards in rotation")
            return lines
        wrote = self._exec(ctx, agent["Id"], "sync", *self._out_args(ctx))  # lets go of a change's holds
        if recreated or wrote.get("before") != wrote.get("backends"):
            lines.append(f"rewrote table {K.table_name(ctx.group)}: {len(wrote.get('backends', []))} shards in rotation")
        return lines

    # -- scale / update ---------------------------------------------------------------------------

    def remove_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Rewrite the table without the shards of ``ctx.draining`` (``indexes`` among them), and
        have the agent keep them out: in effect when this returns."""
        self._rotate(ctx, indexes)

    def hold_backends(self, ctx: Context, indexes: list[int]) -> None:
        """New shards (``ctx.draining``) stay out of the table from their start until added."""
        self._rotate(ctx, indexes)

    def forget_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Nothing: a stopped shard left the table already (it was held out, and the agent takes a
        stopped one out anyway); its index stays held while ``ctx.draining`` has it (a successor
        comes under it) and is let go by the next ``add_backends`` or the final repair."""

    def add_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Rewrite the table with every running shard not in ``ctx.draining``, and wait until each of
        ``indexes`` is in rotation. One without a Docker healthcheck enters once it accepts
        connections (:mod:`kernel_listen`): while the agent says it is not listening yet, this
        waits up to ``kernel_listen.BOUND`` seconds, asking the agent what the kernel has; one
        neither in rotation nor waiting (not running, no address yet) gets ``ADD_TIMEOUT`` seconds
        of syncs (the daemon's list lags a start by a moment). TessonError when time is up."""
        began = time.monotonic()
        cid = self._running_agent(ctx, indexes)
        wrote = self._exec(ctx, cid, "sync", *self._out_args(ctx))
        while True:
            missing = sorted(set(map(ctx.shard_name, indexes)) - set(wrote.get("names") or []))
            if not missing:
                return
            absent = [n for n in missing if n not in (wrote.get("waiting") or [])]
            deaf = not absent
            took = time.monotonic() - began
            if deaf and took > LISTEN_TIMEOUT:
                ports = ", ".join(f"{p}/tcp" for p in listen.tcp_ports(self.doors))
                raise NotAdmitted(f"{', '.join(missing)} not in rotation after {LISTEN_TIMEOUT:.0f}s: not listening on "
                                  f"{ports} (the kernel door admits a shard once it accepts connections; see docker logs "
                                  f"{missing[0]}); tesson ps -g {ctx.group} says when it does",
                                  [i for i in indexes if ctx.shard_name(i) in missing])
            if absent and took > ADD_TIMEOUT:
                raise TessonError(f"{', '.join(absent)} not in rotation after {ADD_TIMEOUT:.0f}s: not running on the "
                                  f"group's network {network_name(ctx.group)} (see tesson ps -g {ctx.group})")
            time.sleep(0.2)
            # waiting to listen: the agent admits it (no rewrite needed); else sync again
            wrote = self._status(ctx, cid) if deaf else self._exec(ctx, cid, "sync", *self._out_args(ctx))

    def _rotate(self, ctx: Context, indexes: list[int]) -> dict:
        """``kernel-agent sync [--out ctx.draining]`` in the running agent: what it wrote."""
        return self._exec(ctx, self._running_agent(ctx, indexes), "sync", *self._out_args(ctx))

    def _running_agent(self, ctx: Context, indexes: list[int]) -> str:
        """The running agent's id; TessonError (naming the shards to move) when it does not run."""
        agent = unless_gone(ctx.docker.inspect_container, lb_name(ctx.group))
        state = (agent or {}).get("State") or {}
        if agent is None or not state.get("Running") or state.get("Restarting"):
            raise TessonError(f"kernel agent {lb_name(ctx.group)} is {'missing' if agent is None else 'not running'}, "
                              f"so {', '.join(map(ctx.shard_name, indexes))} cannot be moved in or out of the door: "
                              f"'tesson repair -g {ctx.group}' brings it back")
        return agent["Id"]

    @staticmethod
    def _out_args(ctx: Context) -> list[str]:
        """``--out I,J`` for the shards held out (none: no option, so an older agent still syncs)."""
        return ["--out", ",".join(map(str, sorted(ctx.draining)))] if ctx.draining else []

    # -- ps ---------------------------------------------------------------------------------------

    def describe(self, ctx: Context) -> dict:
        name = lb_name(ctx.group)
        out = {"kind": KIND, "container": name, "table": K.table_name(ctx.group),
               "ports": [str(d) for d in self.doors], "image": self.image, "method": "round robin (numgen inc)"}
        agents = self._lb_containers(ctx)
        if not agents:
            return {**out, "status": "agent missing: the rules last written stay in force (tesson repair)", "in_rotation": None}
        c = agents[0]
        out["id"] = c.short_id
        if c.state != "running":
            return {**out, "status": f"agent {c.state or 'unknown'}: the rules last written stay in force",
                    "in_rotation": None}
        try:
            st = self._status(ctx, c.id)
        except TessonError as e:
            return {**out, "status": f"running, table unreadable: {e}", "in_rotation": None}
        names = st.get("names") or []
        total = len(ctx.shards) or len(names)
        status = f"running, {len(names)}/{total} shards in rotation"
        held = [ctx.shard_name(i) for i in st.get("held") or []]
        deaf = [n for n in st.get("waiting") or [] if n not in names]  # running, out until it listens
        why = [f"{', '.join(held)} held out by a scale or update"] if held else []
        why += [f"{', '.join(deaf)} not listening yet"] if deaf else []
        if why:
            status += f" ({'; '.join(why)})"
        if st.get("drained"):
            status = "drained (stopped): no shard in rotation"
        return {**out, "status": status, "in_rotation": names, "held_out": held, "not_listening": deaf,
                "ports": [str(K.Door(**d)) for d in st.get("doors", [])] or out["ports"]}

    # -- helpers -----------------------------------------------------------------------------------

    def _check_other_groups(self, ctx: Context) -> None:
        """Two groups never share a host port: another kernel group's ports are held even while its
        agent is down (its rules still DNAT them)."""
        from tesson import ports as _ports

        found = ctx.docker.containers(all=True, filters=L.filters(frontend=KIND))
        mine = {(d.proto, d.host_port) for d in self.doors}
        for c in found:
            labels = c.get("Labels") or {}
            other = labels.get(L.GROUP)
            if not other or other == ctx.group:
                continue
            try:
                theirs = {(d.proto, d.host_port) for d in doors_of(_ports.parse(json.loads(labels.get(L.PORTS) or "[]")))}
            except (ValueError, TypeError, TessonError):
                continue
            clash = sorted(mine & theirs)
            if clash:
                proto, port = clash[0]
                raise TessonError(f"host port {port}/{proto} is held by tesson group {other} (kernel front door): "
                                  f"pick another port, or stop that group (tesson stop -g {other} --purge)")


FRONTEND = KernelFrontend
