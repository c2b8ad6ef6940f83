"""``--gorb DEVICE://HOST:PORT``: the group's balancer is Gorb (IPVS), and through it Consul.

Shards publish their ``-p`` ports as with ``--lb none`` (an ephemeral host port, or the binding
given). For each container port and protocol the group has one Gorb virtual service
``GROUP-PORT-PROTO``, and every shard is one of its backends, ``SHARDNAME-PORT-PROTO``, at the
device's IPv4 address (or the binding's own address) and the shard's published port.

With ``--gorb-forward dr`` (IPVS direct routing) the shards publish nothing: they join a macvlan
network on the URI's device, carry the service address on their loopback, and each backend is the
shard's own macvlan address at the service port, method ``dr`` (tesson.frontend.macvlan). The
address goes back on a shard's loopback after every start, tesson's own or Docker's (the group's
VIP agent ``GROUP-vip``): tesson.frontend.vip_agentctl.
``tunnel`` is refused: why is in :func:`gorb_services.check_forward`.

The Gorb URI is kept in a label, so ``stop``, ``ps`` and ``repair`` find Gorb without ``--gorb``.
The services' and backends' names and bodies, and the ``-p`` checks, are in :mod:`gorb_services`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Callable

from tesson import gorb_client as G
from tesson import labels as L
from tesson import log
from tesson.errors import TessonError, UsageError
from tesson.frontend import Context, Frontend
from tesson.frontend import macvlan as MV
from tesson.frontend.gorb_services import (
    SCHEDULERS,
    STATUS,
    VService,
    backend_options,
    check_forward,
    check_ports,
    near_network_device,
    published,
    services_of,
)
from tesson.frontend.none import publish
from tesson.frontend.vip_agentctl import VipControl

if TYPE_CHECKING:
    from tesson.placement import Shard
    from tesson.request import RunRequest


class GorbFrontend(VipControl, Frontend):
    kind = "gorb"

    def __init__(self, uri: G.GorbURI, method: str = "", forward: str = "nat", macvlan_range: str = "") -> None:
        self.uri = uri
        self.method = method
        self.forward = forward or "nat"
        self.macvlan_range = macvlan_range
        self._client: G.GorbClient | None = None
        self._stop_errors: list[str] = []
        self._vip_seen: set[tuple[str, str]] = set()  # dr: the shard starts given the VIP in this command

    # construction ---------------------------------------------------------------------------------
    @classmethod
    def from_request(cls, req: RunRequest) -> GorbFrontend:
        opts = req.frontend
        uri = G.parse_uri(opts.gorb_uri or "", default_device=near_network_device(req))
        method = (opts.gorb_method or "").lower()
        if method and method not in SCHEDULERS:
            raise UsageError(f"unknown --gorb-method {method!r} (IPVS schedulers: {', '.join(SCHEDULERS)})")
        if not req.ports:
            raise UsageError("--gorb needs at least one -p PORT: Gorb balances the group's published ports")
        check_ports(req.ports)
        flags = opts.lb_flags_given()
        if flags:
            raise UsageError(f"{', '.join(flags)}: the nginx balancer's options do not apply with --gorb "
                             f"(Gorb is the balancer: drop {flags[0]}; its scheduler is --gorb-method)")
        from tesson import config

        config.check_for_balancer(req.config, "Gorb")
        forward = opts.gorb_forward or "nat"
        check_forward(forward)
        rng = ""
        if forward == "dr":
            MV.check_ports(req.ports)
            rng = str(MV.check_range(opts.macvlan_range, MV.device_interface(uri.device), uri.device))
        elif opts.macvlan_range:
            raise UsageError("--macvlan-range is for --gorb-forward dr only")
        return cls(uri, method, forward, rng)

    @classmethod
    def from_labels(cls, labels: dict) -> GorbFrontend:
        text = labels.get(L.GORB_URI)
        if not text:
            raise TessonError("the group was run with Gorb, but its containers do not say which Gorb (label missing)")
        return cls(G.parse_uri(text, check_device=False), labels.get(L.GORB_METHOD, ""),
                   labels.get(L.GORB_FORWARD) or "nat", labels.get(L.MACVLAN_RANGE, ""))

    def labels(self) -> dict:
        out = {L.GORB_URI: str(self.uri), L.GORB_METHOD: self.method}
        if self.forward != "nat":
            out.update({L.GORB_FORWARD: self.forward, L.MACVLAN_RANGE: self.macvlan_range})
        return out

    @property
    def dr(self) -> bool:
        return self.forward == "dr"

    @property
    def network(self) -> str:
        """dr: the macvlan network the shards join."""
        return MV.network_name(self.uri.device)

    def services(self, ctx: Context) -> list[VService]:
        """The group's services; in dr mode each with its address (the VIP on the shards' loopback)."""
        out = services_of(ctx.group, ctx.ports)
        if self.dr:
            ip = self.device_ip()
            out = [VService(v.name, v.port, v.proto, v.host or ip) for v in out]
        return out

    def where(self, svc: VService, inspect: dict, device_ip: str) -> tuple[str, int] | None:
        """Where Gorb reaches one shard for ``svc``: its published port (nat), or its macvlan
        address at the service port (dr)."""
        if self.dr:
            ip = MV.address(inspect, self.network)
            return (ip, svc.port) if ip else None
        return published(inspect, svc, device_ip)

    @property
    def client(self) -> G.GorbClient:
        if self._client is None:
            self._client = G.GorbClient.for_uri(self.uri)
        return self._client

    def device_ip(self) -> str:
        if not self.uri.address:
            self.uri = G.parse_uri(str(self.uri))
        return self.uri.address

    # run --------------------------------------------------------------------------------------------
    def shape_shard(self, ctx: Context, shard: Shard, body: dict) -> None:
        if self.dr:
            MV.shape(body, self.network, ctx.ports)
        else:
            publish(ctx, body)

    def before_shards(self, ctx: Context) -> None:
        # Fail before any container exists when Gorb cannot be reached at all.
        self.client.list_services()
        if self.dr:
            from tesson import default_image
            from tesson.pull import ensure_image

            ensure_image(ctx.docker, default_image(), "missing")  # for the loopback step
            device = self.uri.device
            net_id, made = MV.ensure_network(ctx.docker, device, MV.device_interface(device),
                                             ipaddress.IPv4Network(self.macvlan_range), ctx.labels)
            if made:
                ctx.undo.add(f"macvlan network {self.network}",
                             lambda: True if MV.remove_if_unused(ctx.docker, device) else ctx.undo.KEPT)

    def after_start(self, ctx: Context, indexes: list[int]) -> None:
        """dr: a started shard has a new network namespace, without the VIP: put it on its lo."""
        if self.dr:
            self.put_vips(ctx, {i: ctx.started.get(i) or ctx.docker.inspect_container(ctx.shard_name(i))
                                 for i in indexes})

    def after_shards(self, ctx: Context) -> None:
        if self.dr:  # every shard has its VIP: the agent gives it back after Docker's own restarts
            self.start_agent(ctx, record=True)
        device_ip = self.device_ip()
        client = self.client
        for svc in self.services(ctx):
            if client.create_service(svc.name, svc.options(self.method), exist_ok=True):
                ctx.undo.add(f"Gorb service {svc.name}", _remover(client, svc.name))
                log.info("gorb service created", service=svc.name)
            else:
                log.info("gorb service exists already", service=svc.name)
            for index in sorted(ctx.started):
                self._register(ctx, svc, index, device_ip)

    def _register(self, ctx: Context, svc: VService, index: int, device_ip: str, inspect: dict | None = None) -> str:
        name = ctx.shard_name(index)
        where = self.where(svc, inspect if inspect is not None else ctx.started[index], device_ip)
        if where is None:
            what = f"no address on {self.network}" if self.dr else f"no host port for {svc.port}/{svc.proto}"
            raise TessonError(f"shard {name} has {what}: nothing to give Gorb")
        rs = svc.backend_name(name)
        try:
            self.client.create_backend(svc.name, rs, backend_options(svc, *where, self.forward))
        except G.GorbError as e:
            if e.status == 409:
                raise TessonError(
                    f"{e}: Gorb already has a backend named {rs} (names are unique across Gorb); "
                    f"remove it (DELETE {self.uri.url}/service/{svc.name}/{rs}) or stop the group holding it"
                ) from None
            raise
        ctx.undo.add(f"Gorb backend {svc.name}/{rs}", _remover(self.client, svc.name, rs))
        log.info("gorb backend registered", service=svc.name, backend=rs, host=where[0], port=where[1])
        return f"{where[0]}:{where[1]}"

    # stop ---------------------------------------------------------------------------------------------
    def before_stop(self, ctx: Context) -> None:
        """Withdraw the group's services (their backends go with them) before the containers stop.

        An unknown service is a warning. Any other failure does not keep the containers running:
        it is remembered and reported (exit 1) once they have stopped."""
        self._stop_errors = []
        if self.dr:
            self.stop_agent(ctx)
        for svc in services_of(ctx.group, ctx.ports):
            try:
                if self.client.remove_service(svc.name, missing_ok=True):
                    log.info("gorb service removed", service=svc.name)
                else:
                    log.warning("Gorb did not know the service", service=svc.name, gorb=self.uri.url)
            except G.GorbUnreachable as e:
                self._stop_errors.append(str(e))
                break  # the others would only wait for the same unreachable Gorb
            except G.GorbError as e:
                self._stop_errors.append(str(e))

    def after_stop(self, ctx: Context) -> None:
        left = []
        if self.dr and ctx.purge:
            left = [f"a loopback step of the VIP agent was not removed ({why})" for why in self.purge_steps(ctx)]
            try:
                MV.remove_if_unused(ctx.docker, self.uri.device)
            except Exception as e:
                left.append(f"the macvlan network {self.network} was not removed: {e}")
        if self._stop_errors:
            also = f"; and {'; '.join(left)}" if left else ""
            raise TessonError(f"the containers stopped, but the group is still registered with Gorb: "
                              f"{self._stop_errors[0]}{also}")
        if left:
            raise TessonError(f"group {ctx.group}: its containers are removed, but {'; '.join(left)}")

    # repair -------------------------------------------------------------------------------------------
    def repair(self, ctx: Context, recreated: list[int]) -> list[str]:
        """Make Gorb match the running shards: services back (after a Gorb restart), backends of
        recreated shards re-registered at their new ports, stale backends of the group removed."""
        device_ip = self.device_ip()
        client = self.client
        inspects = dict(ctx.started)
        for st in ctx.state.shards if ctx.state is not None else []:
            if st.up and st.id and st.index not in inspects:
                inspects[st.index] = ctx.docker.inspect_container(st.id)
        running = {i: ins for i, ins in inspects.items() if (ins.get("State") or {}).get("Running")}
        lines: list[str] = []
        if self.dr:  # one Docker (re)started by itself has a new network namespace, without the VIP
            for name in self.put_vips(ctx, running):
                lines.append(f"put the service address back on {name}'s loopback (started outside tesson: "
                             "a new network namespace)")
            lines += self.agent_repair(ctx)
        for svc in self.services(ctx):
            if client.create_service(svc.name, svc.options(self.method), exist_ok=True):
                ctx.undo.add(f"Gorb service {svc.name}", _remover(client, svc.name))
                lines.append(f"re-created Gorb service {svc.name}")
            current = client.service(svc.name) or {}
            ours = re.compile(rf"^{re.escape(ctx.group)}-(\d+)-{svc.port}-{svc.proto}$")
            stale: dict[str, str] = {}  # backend name -> where it pointed
            want = {}  # backend name -> (shard index, (host, port)) for every running shard
            for index, ins in sorted(running.items()):
                where = self.where(svc, ins, device_ip)
                if where is not None:
                    want[svc.backend_name(ctx.shard_name(index))] = (index, where)
            for rs in sorted(current.get("backends") or []):
                m = ours.match(rs)
                if not m:
                    continue  # not one of this group's shards: not ours to touch
                index = int(m.group(1))
                if rs not in want and any(s.index == index for s in ctx.shards):
                    continue  # its shard is down and was not repaired: Gorb's health check has it
                opts = (client.backend(svc.name, rs) or {}).get("options") or {}
                if rs in want and (opts.get("host"), opts.get("port")) == want[rs][1]:
                    del want[rs]  # registered where the shard is: nothing to do
                    continue
                client.remove_backend(svc.name, rs, missing_ok=True)
                stale[rs] = f"{opts.get('host')}:{opts.get('port')}"
            for rs, (index, _where) in sorted(want.items(), key=lambda kv: kv[1][0]):
                at = self._register(ctx, svc, index, device_ip, running[index])
                was = stale.pop(rs, None)
                lines.append(f"{'re-' if was else ''}registered {rs} with Gorb service {svc.name} at {at}" + (f" (was {was})" if was else ""))
            for rs, was in sorted(stale.items()):
                lines.append(f"removed stale Gorb backend {rs} of {svc.name} ({was})")
        return lines

    # scale / update -----------------------------------------------------------------------------------
    def remove_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Weight 0 for each of the shards' backends (PATCH): IPVS sends them no new connection,
        the open ones go on while the runtime drains the shards."""
        for svc in services_of(ctx.group, ctx.ports):
            for index in indexes:
                rs = svc.backend_name(ctx.shard_name(index))
                if self.client.set_weight(svc.name, rs, 0, missing_ok=True):
                    log.info("gorb backend quiesced", service=svc.name, backend=rs)

    def forget_backends(self, ctx: Context, indexes: list[int]) -> None:
        """DELETE the backends of shards whose containers are stopped."""
        for svc in services_of(ctx.group, ctx.ports):
            for index in indexes:
                self.client.remove_backend(svc.name, svc.backend_name(ctx.shard_name(index)), missing_ok=True)

    def add_backends(self, ctx: Context, indexes: list[int]) -> None:
        """PUT each shard's backend at its published port, or (dr) its macvlan address (one left
        from before is replaced)."""
        device_ip = self.device_ip()
        for svc in self.services(ctx):
            self.client.create_service(svc.name, svc.options(self.method), exist_ok=True)
            for index in indexes:
                inspect = ctx.started.get(index) or ctx.docker.inspect_container(ctx.shard_name(index))
                rs = svc.backend_name(ctx.shard_name(index))
                where = self.where(svc, inspect, device_ip)
                if where is None:
                    what = f"no address on {self.network}" if self.dr else f"no host port for {svc.port}/{svc.proto}"
                    raise TessonError(f"shard {ctx.shard_name(index)} has {what}")
                body = backend_options(svc, *where, self.forward)
                try:
                    self.client.create_backend(svc.name, rs, body)
                except G.GorbError as e:
                    if e.status != 409:
                        raise
                    self.client.remove_backend(svc.name, rs, missing_ok=True)
                    self.client.create_backend(svc.name, rs, body)
                log.info("gorb backend added", service=svc.name, backend=rs, host=where[0], port=where[1])

    # ps -----------------------------------------------------------------------------------------------
    def describe(self, ctx: Context) -> dict:
        services = self.services(ctx) if self.dr and self.uri.address else services_of(ctx.group, ctx.ports)
        doc: dict = {"kind": "gorb", "uri": str(self.uri), "status": "", "ports": [s.front() for s in services], "services": []}
        if self.dr:
            doc["forward"] = "dr"
            doc["macvlan"] = {"network": self.network, "range": self.macvlan_range, "addresses": MV.addresses(ctx, self.network),
                              "agent": self.agent_state(ctx)}
        names = ctx.shard_names()
        try:
            up_total, rs_total, parts = 0, 0, []
            for svc in services:
                info = self.client.service(svc.name)
                entry: dict = {"name": svc.name, "port": svc.port, "protocol": svc.proto}
                if info is None:
                    entry["registered"] = False
                    doc["services"].append(entry)
                    parts.append(f"{svc.name} not registered")
                    continue
                opts = info.get("options") or {}
                entry.update(registered=True, host=opts.get("host"), health=info.get("health"), backends=[])
                backends = list(info.get("backends") or [])
                for rs in [svc.backend_name(n) for n in names if svc.backend_name(n) not in backends]:
                    entry["backends"].append({"name": rs, "status": "missing"})
                for rs in backends:
                    b = self.client.backend(svc.name, rs) or {}
                    m, o = b.get("metrics") or {}, b.get("options") or {}
                    entry["backends"].append(
                        {
                            "name": rs,
                            "host": o.get("host"),
                            "port": o.get("port"),
                            "status": STATUS.get(m.get("status"), str(m.get("status"))),
                            "health": m.get("health"),
                            "uptime": m.get("uptime"),
                        }
                    )
                entry["backends"].sort(key=lambda b: b["name"])
                up = sum(1 for b in entry["backends"] if b["status"] == "up")
                up_total, rs_total = up_total + up, rs_total + len(entry["backends"])
                bad = [f"{b['name']} {b['status']}" for b in entry["backends"] if b["status"] != "up"]
                parts.append(f"{svc.name} {up}/{len(entry['backends'])} up" + (f" [{', '.join(bad)}]" if bad else ""))
                doc["services"].append(entry)
                if opts.get("host"):
                    doc["ports"][services.index(svc)] = svc.front(opts["host"])
            doc["status"] = f"{self.uri}: " + "; ".join(parts)
            if self.dr:
                shown = ", ".join(f"{n} {ip}" for n, ip in doc["macvlan"]["addresses"].items()) or "no shard up"
                agent = doc["macvlan"]["agent"]
                doc["status"] += f"; dr via {self.network}: {shown}; VIP agent {agent['container']} {agent['state']}"
            if up_total < rs_total or not all(e.get("registered") for e in doc["services"]):
                doc["degraded"] = "Gorb is missing entries" if any(
                    not e.get("registered") or any(b["status"] == "missing" for b in e.get("backends", []))
                    for e in doc["services"]) else "Gorb backends down"
            if self.dr and doc["macvlan"]["agent"]["state"] != "running" and "degraded" not in doc:
                doc["degraded"] = "VIP agent not running"
        except G.GorbUnreachable as e:
            doc["degraded"] = "Gorb unreachable"
            doc["status"] = f"Gorb unreachable at {self.uri.url} ({e.message})"
            doc["services"] = [{"name": s.name, "port": s.port, "protocol": s.proto} for s in services]
        except G.GorbError as e:
            doc["degraded"] = "Gorb error"
            doc["status"] = f"Gorb error: {e}"
        return doc


def _remover(client: G.GorbClient, vs: str, rs: str | None = None) -> Callable[[], bool]:
    if rs is None:
        return lambda: client.remove_service(vs, missing_ok=True)
    return lambda: client.remove_backend(vs, rs, missing_ok=True)


FRONTEND = GorbFrontend
