"""``--lb nginx`` (``--lb auto`` where the kernel door cannot serve): an embedded nginx stream balancer in front of the shards.

``run -p SPEC...`` makes, in this order (each recorded in ``ctx.undo``, so a failed run removes it):

- a user-defined bridge network ``tesson-GROUP`` labelled with the group;
- the shards, on that network, publishing nothing;
- ``GROUP-lb`` (labels ``io.tesson.group``, ``io.tesson.role=lb``): the balancer image's nginx in the
  foreground (entrypoint overridden to ``nginx``), its config (see :mod:`nginx_conf`) copied into the
  created container before it starts. Where every ``-p`` names one fixed host port
  (:func:`nginx_conf.host_network`) it runs in the host's network and nginx listens on the host
  addresses and ports itself (no docker-proxy, no DNAT before it), with only the capabilities nginx
  needs there: SETUID and SETGID (its workers drop root for ``nobody``), NET_BIND_SERVICE for a host
  port below 1024, no-new-privileges. Otherwise (an ephemeral port, a range) it is on the group's
  network, publishing every ``-p`` spec exactly as ``docker run -p`` would. The run waits until
  nginx has loaded its config (its pid file exists), so a config nginx refuses or a host port that
  is taken fails the run, with nginx's or the daemon's reason.

Shards are upstream servers by their IP address on the group network (see :mod:`nginx_conf`), so
nginx starts and reloads without DNS, also while a shard is down. The addresses written are saved
beside the config (``upstreams.json``): ``ps`` says the balancer is stale when a running shard's
address is not among them (or that the check itself failed, ports still shown), and ``repair``
then reloads nginx: the new files are written beside the old ones, checked with ``nginx -t`` inside
the container and moved into place only if nginx accepts them, then SIGHUP. A refused config
leaves the previous one live and on disk (so the balancer still starts after a restart) and repair
fails with nginx's message. A missing or dead balancer is recreated.

A group run without ``-p`` has nothing to balance: no network, no balancer. ``stop --purge``
removes the network with the group's other networks (the runtime's ``purge_networks``). The
Docker and host work behind these hooks is in :mod:`nginx_io`, the balancer container's in
:mod:`nginx_lb`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable

from tesson import DEFAULT_IMAGE, cpulist, default_image, log, names
from tesson import labels as L
from tesson import ports as P
from tesson.container import Container
from tesson.docker_client import explain, is_remote, remove_container, unless_gone
from tesson.errors import TessonError, UsageError
from tesson.frontend import Context, Frontend
from tesson.frontend import nginx_conf as nc
from tesson.frontend import nginx_io as nio
from tesson.frontend import nginx_lb as nlb

if TYPE_CHECKING:
    from tesson.placement import Shard
    from tesson.request import RunRequest

KIND = "nginx"


class NginxFrontend(Frontend):
    kind = KIND

    def __init__(self, ports: Iterable[P.Port] = (), method: str | None = None, image: str = DEFAULT_IMAGE,
                 cpus: Iterable[int] = ()) -> None:
        self.ports = list(ports)
        self.method = method  # a key of nginx_conf.METHODS, or None
        self.image = image
        self.cpus = list(cpus)
        # in the host's network (nginx listens on the host ports) or on the group's bridge network
        # (published by Docker); an existing balancer's own mode wins where one is found (repair)
        self.host = nc.host_network(self.ports)
        self._network: str | None = None  # the network's id once made or found by this process

    # -- building -----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """A balancer only makes sense with ports to balance."""
        return bool(self.ports)

    @classmethod
    def from_request(cls, req: RunRequest) -> NginxFrontend:
        opts = req.frontend
        ports = list(req.ports)
        for p in ports:
            if p.proto not in nc.PROTOCOLS:
                raise UsageError(
                    f"port spec {p.spec!r}: the nginx balancer does tcp and udp, not {p.proto} (use --lb none)"
                )
        method = nc.normalize_method(opts.lb_method)
        image = opts.lb_image or default_image()
        cpus = nio.check_cpus(opts.lb_cpus, req.topology)
        if nc.host_network(ports):
            nc.host_listeners(ports)  # a host port published for two container ports: UsageError
        if not ports and opts.lb == KIND:
            raise UsageError("--lb nginx needs at least one -p (the ports the balancer publishes)")
        if ports:
            from tesson import config

            net = names.network_name(req.group)
            mode = (req.config.get("HostConfig") or {}).get("NetworkMode")
            if mode and mode != net:
                raise UsageError(
                    f"the config sets HostConfig.NetworkMode={mode!r}, but behind the nginx balancer the shards "
                    f"join the group's network {net}: drop it, or use --lb none"
                )
            config.check_for_balancer(req.config, "the nginx balancer")
        if not ports and (method or opts.lb_cpus or opts.lb_image):
            log.warning("no -p given: the group has no balancer, --lb-* options are ignored")
        return cls(ports, method, image, cpus)

    @classmethod
    def from_labels(cls, labels: dict) -> NginxFrontend:
        try:
            specs = json.loads(labels.get(L.PORTS) or "[]")
            ports = [p for p in P.parse(specs) if p.proto in nc.PROTOCOLS]
        except (ValueError, TypeError, UsageError):
            ports = []
        method = labels.get(L.LB_METHOD) or None
        if method not in nc.METHODS:
            method = None
        cpus = []
        try:
            cpus = cpulist.parse(labels.get(L.LB_CPUS) or "")
        except ValueError:
            pass
        return cls(ports, method, labels.get(L.LB_IMAGE) or DEFAULT_IMAGE, cpus)

    def labels(self) -> dict:
        return {L.LB_METHOD: self.method or "", L.LB_IMAGE: self.image, L.LB_CPUS: cpulist.format(self.cpus)}

    # -- run ------------------------------------------------------------------------------------

    def shape_shard(self, ctx: Context, shard: Shard, body: dict) -> None:
        if not self.enabled:
            return
        host = body.get("HostConfig") or {}
        host["NetworkMode"] = self._network or names.network_name(ctx.group)
        body["HostConfig"] = host

    def before_shards(self, ctx: Context) -> None:
        if not self.enabled:
            return
        self._check_image(ctx)
        if not is_remote():
            nio.check_host_ports(self.ports, v6_any=self.host)
        self._network = nio.make_network(ctx, record=True)

    def after_shards(self, ctx: Context) -> None:
        if not self.enabled:
            return
        addresses = nio.shard_addresses(ctx)
        down = [n for n in ctx.shard_names() if not addresses.get(n)]
        if down:
            raise TessonError(
                f"shard{'s' if len(down) > 1 else ''} {', '.join(down)} not running after start "
                f"(see docker logs {down[0]}): no balancer made"
            )
        self._create_lb(ctx, addresses, record=True)

    # -- stop -------------------------------------------------------------------------------------

    def before_stop(self, ctx: Context) -> None:
        """Close the front door first, so no new connection goes to a shard that is stopping."""
        for c in self._lb_containers(ctx):
            if not c.running:
                continue
            try:
                ctx.docker.stop(c.id, timeout=min(ctx.timeout, 10))
            except Exception as e:  # the runtime stops it again with the rest
                log.warning("could not stop the balancer first", error=explain(e))

    # -- repair ------------------------------------------------------------------------------------

    def repair(self, ctx: Context, recreated: list[int]) -> list[str]:
        if not self.enabled:
            return []
        client = ctx.docker
        lines: list[str] = []
        nets = nio.group_networks(ctx)
        if not nets:
            self._network = nio.make_network(ctx, record=False)
            lines.append(f"recreated network {names.network_name(ctx.group)}")
        else:  # by id: a name two networks share is ambiguous to Docker
            self._network = min(nets, key=lambda n: (n.get("Created") or "", n["Id"]))["Id"]
        addresses = nio.shard_addresses(ctx)
        running = list(addresses)
        name = names.lb_name(ctx.group)
        if not running:
            lines.append(f"balancer {name}: no shard is running, nothing to balance")
            return lines
        found = unless_gone(client.inspect_container, name)
        lb = Container(found) if found is not None else None
        if lb is None or not lb.running:
            was = "missing" if lb is None else (lb.state or "not running")
            self._check_image(ctx)
            if lb is not None:
                try:
                    remove_container(client, lb.id)
                except Exception as e:
                    raise TessonError(f"balancer {name} ({was}) could not be removed: {explain(e)}") from None
            self._create_lb(ctx, addresses, record=False)
            lines.append(f"recreated balancer {name} (it was {was}): {len(running)} shards")
            return lines
        try:
            loaded = nio.loaded_addresses(client, lb.id)
        except Exception as e:
            log.warning("balancer addresses unreadable", error=explain(e))
            loaded = None
        if recreated or loaded != addresses:
            self.host = nio.in_host_network(lb)  # reload it as it was made
            try:
                self._reload(ctx, lb.id, addresses)
            except TessonError:
                raise
            except Exception as e:
                raise TessonError(f"balancer {name} could not be reloaded: {explain(e)}") from None
            lines.append(f"reloaded balancer {name}: {len(running)} shards at their current addresses")
        return lines

    # -- scale / update ------------------------------------------------------------------------------

    def remove_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Reload without the shards of ``ctx.draining``: nginx's graceful reload starts new workers
        on the new config and lets the old ones finish their open connections, so a client in the
        middle of a request (or a kept-alive connection) is not cut; new connections go to the
        others. When no shard would be left, the config stays (the shard serves until it stops)."""
        self._reload_live(ctx)

    def add_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Reload with every running shard not draining (the new ones at their new addresses)."""
        self._reload_live(ctx)

    def _reload_live(self, ctx: Context) -> None:
        if not self.enabled:
            return
        lbs = [c for c in self._lb_containers(ctx) if c.running]
        if not lbs:
            log.warning("no running balancer to reload: tesson repair makes one", group=ctx.group)
            return
        addresses = nio.shard_addresses(ctx)
        if not addresses:
            log.warning("no shard would be left behind the balancer: its config stays", group=ctx.group)
            return
        try:
            self._reload(ctx, lbs[0].id, addresses)
        except TessonError:
            raise
        except Exception as e:
            raise TessonError(f"balancer {names.lb_name(ctx.group)} could not be reloaded: {explain(e)}") from None

    # -- ps ----------------------------------------------------------------------------------------

    def describe(self, ctx: Context) -> dict:
        name = names.lb_name(ctx.group)
        if not self.enabled:
            return {"kind": KIND, "container": None, "status": "no balancer (no -p)", "ports": []}
        lbs = self._lb_containers(ctx)
        if not lbs:
            return {"kind": KIND, "container": name, "status": "missing", "ports": self._wanted_ports(), "image": self.image,
                    "degraded": "balancer missing"}
        c = lbs[0]
        status = c.state or "unknown"
        if nio.in_host_network(c):  # no Docker port bindings: what nginx was told to listen on
            self.host = True
            listening = self._listening(ctx, c.id) if status == "running" else []
            ports = nlb.displayed(listening) or self._wanted_ports()
        else:
            ports = nlb.displayed(c.published()) or self._wanted_ports()
        stale: list[str] | None = []
        if status == "running":
            try:
                stale = self._stale(ctx, c.id)
            except Exception as e:  # the balancer's state is still worth showing: its ports
                stale = None
                status = f"running, stale check failed: {explain(e)}"
            if stale:
                status = f"running, stale: run tesson repair to reach {', '.join(stale)}"
        degraded = None
        if status != "running" and not status.startswith("running,"):
            degraded = f"balancer {c.state or 'not running'}"
        elif stale:
            degraded = "balancer stale"
        return {
            "kind": KIND,
            "degraded": degraded,
            "container": c.name,
            "id": c.short_id,
            "status": status,
            "stale": stale,
            "detail": c.status,
            "ports": ports,
            "image": c.raw.get("Image") or self.image,
            "method": self.method or "least_conn (tcp), round_robin (udp)",
        }

    # -- helpers -----------------------------------------------------------------------------------

    def _wanted_ports(self) -> list[str]:
        if self.host:
            try:
                return nlb.displayed((ip, host_port, port, proto) for (port, proto), found
                                     in nc.host_listeners(self.ports).items() for ip, host_port, _ in found)
            except UsageError:
                pass
        return [P.display(p.host_ip, p.host_port or "*", p.port, p.proto) for p in self.ports]

    def _listening(self, ctx: Context, cid: str) -> list[tuple[str, int, int, str]]:
        """What the running host-network balancer's live config listens on ([] if unreadable)."""
        try:
            return nc.listening((nio.read_file(ctx.docker, cid, nc.LIVE_PATH) or b"").decode(errors="replace"))
        except Exception as e:
            log.warning("balancer's live config unreadable", error=explain(e))
            return []

    def _check_image(self, ctx: Context) -> None:
        nlb.check_image(ctx.docker, self.image)

    def _stale(self, ctx: Context, cid: str) -> list[str]:
        """The running shards whose current address is not among those the balancer's config lists
        (recreated or restarted onto another address since it was written): nginx does not reach
        them until a reload (``tesson repair``)."""
        loaded = nio.loaded_addresses(ctx.docker, cid)
        if loaded is None:
            return []
        have = set(loaded.values())
        return [n for n, ip in nio.shard_addresses(ctx).items() if ip not in have]

    def _render(self, ctx: Context, addresses: dict[str, str]) -> str:
        return nc.render(ctx.group, addresses, self.ports, self.method, workers=len(self.cpus) or None, host=self.host)

    def _files(self, ctx: Context, addresses: dict[str, str], suffix: str = "") -> bytes:
        """The config and the addresses it lists, as a tar for ``put_archive`` at / (each path +
        ``suffix``: a reload stages them beside the live ones)."""
        conf = self._render(ctx, addresses)
        return nio.tar({nc.CONFIG_PATH + suffix: conf.encode(), nio.ADDRESSES_PATH + suffix: json.dumps(addresses).encode()})

    def _create_lb(self, ctx: Context, addresses: dict[str, str], record: bool) -> str:
        """Create, fill and start ``GROUP-lb`` for the shards ``addresses`` ({name: address})."""
        name = names.lb_name(ctx.group)
        body = nlb.container_body(self.image, {**ctx.base_labels(L.ROLE_LB), **self.labels()}, self.ports, self.host,
                                 self._network or names.network_name(ctx.group), self.cpus)
        cid = nlb.create(ctx, name, body, self._files(ctx, addresses), self.host, record)
        log.info("balancer started", container=name, id=cid[:12], shards=len(addresses), image=self.image,
                 network="host" if self.host else names.network_name(ctx.group))
        return cid

    def _reload(self, ctx: Context, cid: str, addresses: dict[str, str]) -> None:
        """New config into the running balancer, then SIGHUP; a config nginx refuses leaves the
        previous one live (:func:`nginx_lb.reload`)."""
        name = names.lb_name(ctx.group)
        nlb.reload(ctx.docker, cid, name, self._files(ctx, addresses, suffix=nc.STAGED))
        log.info("balancer reloaded", container=name, shards=len(addresses))

    def _lb_containers(self, ctx: Context) -> list[Container]:
        if ctx.state is not None:
            return ctx.state.others_in_role(L.ROLE_LB)
        found = ctx.docker.containers(all=True, filters=L.filters(group=ctx.group, role=L.ROLE_LB))
        return [Container(c) for c in found]


FRONTEND = NginxFrontend
