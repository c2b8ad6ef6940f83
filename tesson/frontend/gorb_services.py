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
FORWARDS = ("nat", "dr")  # IPVS forwarding methods run --gorb-forward takes (tunnel: see check_forward)


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


def check_forward(forward: str) -> None:
    """``--gorb-forward``: ``nat`` or ``dr``; ``tunnel`` is refused (UsageError), for this reason.

    In tunnel mode IPVS wraps each packet for the VIP in an IPIP packet (IP protocol 4) addressed
    to the real server's own address. For a shard on the macvlan network that outer packet lands in
    the shard's network namespace, so the unwrapping would happen there, not on the host: the
    shard needs the kernel's ``ipip`` tunnel, whose fallback device ``tunl0`` the kernel makes in
    every network namespace once the module is in (``net.core.fb_tunnels_only_for_init_net=0``,
    the default), brought up with the VIP on it (the NET_ADMIN step dr already runs could do
    that), ``rp_filter`` off for it (Docker takes ``net.ipv4.conf.tunl0.rp_filter=0`` and
    ``net.ipv4.conf.all.rp_filter=0`` as a shard's namespaced sysctls) and dr's ARP settings.
    What tesson cannot do is the first part: the ``ipip`` module is the daemon host's kernel's,
    loaded (``modprobe ipip``) or built in (``CONFIG_NET_IPIP``) by its operator, never from a
    container without CAP_SYS_MODULE, and it adds ``tunl0`` to every namespace of that host. The
    kernel this was measured on (6.18, no loadable modules) has no ``ipip`` at all: ``ip link add
    ... type ipip`` says ``Unknown device type`` and a container with the ``tunl0`` sysctl fails to
    start (``open /proc/sys/net/ipv4/conf/tunl0/rp_filter: no such file``), so tunnel mode could
    not be tested here, and it stays refused until it can be. Packets 20 bytes larger than the
    shard's path MTU are a further hazard of tunnel mode."""
    if forward == "tunnel":
        raise UsageError("--gorb-forward tunnel is not supported yet: IPVS sends IPIP packets to each shard's own "
                         "address, and only the kernel's ipip module (tunl0, loaded on the daemon's host) could unwrap "
                         "them inside the shard; use dr (shards on the Gorb device's network) or nat")
    if forward not in FORWARDS:
        raise UsageError(f"unknown --gorb-forward {forward!r} (IPVS forwarding methods: {', '.join(FORWARDS)})")


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
