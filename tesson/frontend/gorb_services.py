"""The Gorb frontend's vocabulary, without a client: the group's virtual services and their backends
(names, request bodies, where a shard publishes a service), the checks ``run --gorb`` makes on the
``-p`` ports, and withdrawing every service of a group by name (``stop --purge --gorb``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from tesson import gorb_client as G
from tesson import log
from tesson.errors import UsageError

if TYPE_CHECKING:
    from tesson.ports import Port
    from tesson.request import RunRequest

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq")
STATUS: dict[object, str] = {0: "up", 1: "down", 2: "removed"}  # looked up with whatever JSON Gorb sent
FORWARDS = ("nat", "dr")  # tunnel: not yet (IPIP decapsulates on the host, not in the shard)


@dataclass(frozen=True)
class VService:
    """One virtual service of the group: a container port and protocol."""

    name: str
    port: int
    proto: str
    host: str = ""  # the address the -p spec names ("" = Gorb's default)

    def options(self, method: str | None) -> dict:
        body: dict = {"port": self.port, "protocol": self.proto}
        if self.host:
            body["host"] = self.host
        if method:
            body["method"] = method
        return body

    def backend_name(self, shard_name: str) -> str:
        return G.backend_name(shard_name, self.port, self.proto)

    def front(self, vip: str | None = None) -> str:
        host = vip or self.host or "*"
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.port}/{self.proto}"


def services_of(group: str, ports: Iterable[Port]) -> list[VService]:
    """The group's virtual services, one per container port and protocol, in ``-p`` order."""
    out: dict[tuple, VService] = {}
    for p in ports:
        key = (p.port, p.proto)
        if key not in out:
            host = p.host_ip if p.host_ip and not ipaddress.ip_address(p.host_ip).is_unspecified else ""
            out[key] = VService(G.service_name(group, p.port, p.proto), p.port, p.proto, host)
    return list(out.values())


def check_ports(ports: Iterable[Port]) -> None:
    """What Gorb cannot take: SCTP, or one container port published twice (one backend per shard)."""
    seen: dict[tuple, str] = {}
    for p in ports:
        if p.proto not in ("tcp", "udp"):
            raise UsageError(f"port {p.spec!r}: Gorb (IPVS) balances tcp and udp only, not {p.proto}")
        key = (p.port, p.proto)
        if key in seen and seen[key] != p.spec:
            raise UsageError(
                f"port {p.spec!r}: container port {p.key} is published twice ({seen[key]!r}); "
                "with --gorb each shard is one backend per container port, so publish it once"
            )
        seen[key] = p.spec


def published(inspect: dict, svc: VService, device_ip: str) -> tuple[str, int] | None:
    """Where one shard publishes ``svc``'s port: ``(host, port)`` from its inspect, or None.

    ``0.0.0.0``/``::`` (every address) becomes the device's IPv4; a specific IPv4 binding is kept.
    """
    binds = ((inspect.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{svc.port}/{svc.proto}") or []
    best = None
    for b in binds:
        hp = b.get("HostPort")
        if not hp:
            continue
        ip = b.get("HostIp") or "0.0.0.0"
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        host = device_ip if addr.is_unspecified else ip
        if addr.version == 4 or addr.is_unspecified:
            return host, int(hp)
        best = best or (host, int(hp))
    return best


def near_network_device(req: RunRequest) -> str | None:
    """The first network device among ``run --near``'s (None without one): the device a Gorb URI
    without its own (``HOST:PORT``) registers the group on. Issue 13's rule: the URI's own device
    stays the default whenever it names one."""
    near = req.placement.near
    if not near:
        return None
    io = req.topology.io
    nets = {d.name for d in [*io.devices, *io.virtual] if d.kind == "net"}
    return next((n for n in near if n in nets), None)


def backend_options(svc: VService, host: str, port: int, forward: str = "nat") -> dict:
    body: dict = {"host": host, "port": port}
    if forward != "nat":
        body["method"] = forward
    if svc.proto == "udp":
        body["pulse"] = {"type": "none"}  # a TCP check against a UDP port always fails
    return body


def withdraw_group(uri_text: str, group: str) -> list[str]:
    """``stop --purge -g GROUP --gorb URI``: withdraw from that Gorb every service of the group
    (named ``GROUP-PORT-PROTO``; their backends go with them), whether or not any container of the
    group is left (a run whose rollback could not reach Gorb leaves them). Returns the services
    removed; GorbError (exit 1) when Gorb cannot be asked. No other group's service matches: a
    group name never ends in ``-PORT-PROTO`` of another's, since the rest must be digits, '-' and
    a protocol."""
    client = G.GorbClient.for_uri(G.parse_uri(uri_text, check_device=False))
    ours = re.compile(rf"^{re.escape(group)}-\d+-(tcp|udp|sctp)$")
    removed = []
    for vs in sorted(str(v) for v in client.list_services()):
        if ours.match(vs) and client.remove_service(vs, missing_ok=True):
            log.info("gorb service removed", service=vs)
            removed.append(vs)
    return removed
