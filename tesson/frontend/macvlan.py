"""IPVS direct routing (``run --gorb URI --gorb-forward dr``): the shards on the Gorb device's own
network, through a macvlan network, each carrying the service address on its loopback.

In DR mode IPVS forwards a packet for the virtual address (VIP) unchanged, only re-addressed at
layer 2 to the chosen real server's MAC: so every real server must sit on the director's L2
segment, accept packets for the VIP (the VIP on its loopback) and never answer ARP for it (else
clients would reach a shard straight away, bypassing the balancer). Here:

- the L2 segment: a Docker macvlan network whose parent is the Gorb URI's device, named
  ``tesson-macvlan-DEVICE`` and labelled (``io.tesson.role=macvlan``, ``io.tesson.macvlan.parent``).
  Docker allows one macvlan network per parent, so groups on the same device share it: its subnet
  is the device's own, its address range ``--macvlan-range CIDR`` (required: only the operator
  knows which addresses of the LAN are free), the device's own address reserved. ``stop --purge``
  removes it once no container uses it any more;
- ARP: ``net.ipv4.conf.all.arp_ignore=1`` (answer only for addresses of the interface asked) and
  ``arp_announce=2`` (never announce the VIP as a source) as the shard's namespaced sysctls, which
  Docker sets when it makes the shard's network namespace: no privilege needed;
- the VIP on the loopback: adding an address needs CAP_NET_ADMIN in the shard's namespace. Rather
  than give it to the application for its whole life, tesson runs a one-shot step after each shard
  starts: a container of the tesson image that joins the shard's network namespace
  (``NetworkMode: container:SHARD``), holds NET_ADMIN and nothing else (every other capability
  dropped, no network of its own, no new privileges), adds ``VIP/32`` to ``lo`` unless it is there
  already (saying so), and is removed. The address lives as long as the namespace, and Docker
  makes a new namespace at every start of a container (measured on Docker 20.10: ``docker
  restart``, ``docker stop`` + ``start``, and a restart by the ``unless-stopped`` policy after a
  crash all come back with a bare ``lo``). So the step runs after every start: tesson's own
  (the ``after_start`` hook: ``run``, ``start``, ``restart``, ``repair``, ``scale``, ``update``),
  and Docker's own (a restart by its policy, ``docker restart``), by the group's VIP agent
  ``GROUP-vip``, which follows the daemon's events (:mod:`tesson.frontend.vip_agentctl`: why an
  agent, and what it costs); ``repair`` also checks every other running shard.

Hazards: between a start Docker makes by itself and the agent's step (0.2 s measured) the shard
has no VIP, and drops what IPVS sends it (Gorb's health check reaches the shard at its own
address, which answers). The device's IPv4 and netmask are read on the machine tesson runs on
(as Gorb's URI device is); macvlan children cannot talk to their parent's own address (the kernel's macvlan
isolation): clients must come from the wire, as IPVS's real traffic does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tesson import labels as L
from tesson import log
from tesson.docker_client import explain, remove_container, unless_gone
from tesson.errors import TessonError, UsageError

if TYPE_CHECKING:
    from tesson.frontend import Context
    from tesson.ports import Port

ARP_SYSCTLS = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}


def network_name(device: str) -> str:
    return f"tesson-macvlan-{device}"


def device_interface(device: str) -> ipaddress.IPv4Interface:
    """The device's first IPv4 address with its prefix (UsageError: no such device, or no IPv4)."""
    import socket

    import psutil

    addrs = psutil.net_if_addrs()
    if device not in addrs:
        known = ", ".join(sorted(addrs)) or "none"
        raise UsageError(f"--gorb-forward dr: network device {device!r} does not exist on this host (devices: {known})")
    for a in addrs[device]:
        if a.family == socket.AF_INET and a.address and a.netmask:
            return ipaddress.IPv4Interface(f"{a.address}/{a.netmask}")
    raise UsageError(f"--gorb-forward dr: network device {device!r} has no IPv4 address, so no subnet for the shards")


def check_range(text: str | None, iface: ipaddress.IPv4Interface, device: str) -> ipaddress.IPv4Network:
    """``--macvlan-range``: a CIDR inside the device's subnet (UsageError otherwise)."""
    if not text:
        raise UsageError(f"--gorb-forward dr needs --macvlan-range CIDR: free addresses of {device}'s subnet "
                         f"{iface.network} for the shards (e.g. {_example(iface.network)})")
    try:
        rng = ipaddress.IPv4Network(text, strict=False)
    except ValueError as e:
        raise UsageError(f"--macvlan-range {text!r} is not an IPv4 CIDR ({e})") from None
    if not rng.subnet_of(iface.network):
        raise UsageError(f"--macvlan-range {rng} is outside {device}'s subnet {iface.network}: "
                         "the shards must be on the device's own network for direct routing")
    if rng.num_addresses < 2 and rng.network_address == iface.ip:
        raise UsageError(f"--macvlan-range {rng} holds only {device}'s own address")
    return rng


def _example(net: ipaddress.IPv4Network) -> str:
    if net.prefixlen <= 26:
        return str(list(net.subnets(new_prefix=net.prefixlen + 2))[-1])
    return str(net)


def check_ports(ports: Iterable[Port]) -> None:
    """DR cannot change ports: a host port must equal its container port (the service port)."""
    for p in ports:
        if p.host_port and p.host_port != str(p.port):
            raise UsageError(f"port {p.spec!r}: --gorb-forward dr cannot map ports (IPVS direct routing keeps the "
                             f"destination port): publish {p.port} as {p.port}:{p.port} or just {p.port}")


def vip(port: Port, device_ip: str) -> str:
    """The service address: the ``-p`` spec's address when it names one, else the device's."""
    if port.host_ip and not ipaddress.ip_address(port.host_ip).is_unspecified:
        return port.host_ip
    return device_ip


def shape(body: dict, network: str, ports: list[Port]) -> None:
    """A shard's create body in DR mode: on the macvlan network only, the ARP sysctls, its
    ports exposed (not published: clients reach it through IPVS, at its own address)."""
    from tesson import ports as P

    host = body.setdefault("HostConfig", {}) or {}
    host["NetworkMode"] = network
    host["Sysctls"] = {**(host.get("Sysctls") or {}), **ARP_SYSCTLS}
    host.pop("PortBindings", None)
    body["HostConfig"] = host
    exposed = body.get("ExposedPorts") or {}
    exposed.update(P.exposed_ports(ports))
    body["ExposedPorts"] = exposed


def ensure_network(client: Any, device: str, iface: ipaddress.IPv4Interface, rng: ipaddress.IPv4Network,
                   labels: dict) -> tuple[str, bool]:
    """The device's macvlan network, made if missing: ``(id, made_now)``. An existing one is
    reused only when it is tesson's, on this parent, with this range (TessonError otherwise)."""
    name = network_name(device)
    found = unless_gone(client.inspect_network, name)
    if found is not None:
        opts = found.get("Options") or {}
        cfgs = (found.get("IPAM") or {}).get("Config") or []
        ranges = [c.get("IPRange") or c.get("Subnet") for c in cfgs]
        if found.get("Driver") != "macvlan" or opts.get("parent") != device:
            raise TessonError(f"network {name} exists but is not a macvlan network on {device}: remove it or rename it")
        if str(rng) not in ranges:
            raise TessonError(f"the macvlan network {name} on {device} hands out {', '.join(map(str, ranges))}, "
                              f"not --macvlan-range {rng}: use that range, or stop the groups on it and "
                              f"'docker network rm {name}'")
        return found["Id"], False
    pool: dict[str, Any] = {"Subnet": str(iface.network), "IPRange": str(rng)}
    if iface.ip in rng:
        pool["AuxiliaryAddresses"] = {"parent": str(iface.ip)}  # never hand out the device's own address
    body_labels = {L.ROLE: L.ROLE_MACVLAN, L.MACVLAN_PARENT: device, L.VERSION: labels.get(L.VERSION, "")}
    try:
        made = client.create_network(name, driver="macvlan", options={"parent": device},
                                     ipam={"Driver": "default", "Config": [pool]}, labels=body_labels,
                                     check_duplicate=True)
    except Exception as e:
        raise TessonError(f"cannot make the macvlan network {name} on {device}: {explain(e)}") from None
    log.info("macvlan network made", network=name, parent=device, subnet=str(iface.network), range=str(rng))
    return made["Id"], True


def remove_if_unused(client: Any, device: str) -> bool:
    """Remove the device's macvlan network when no container is attached; True when it went."""
    name = network_name(device)
    found = unless_gone(client.inspect_network, name)
    if found is None:
        return False
    if (found.get("Labels") or {}).get(L.ROLE) != L.ROLE_MACVLAN:
        return False  # not ours
    if found.get("Containers"):
        log.info("macvlan network kept: still in use", network=name, containers=len(found["Containers"]))
        return False
    unless_gone(client.remove_network, found["Id"])
    log.info("macvlan network removed", network=name)
    return True


def address(inspect: dict, network: str) -> str:
    """A shard's address on the macvlan network ("" when it has none)."""
    nets = (inspect.get("NetworkSettings") or {}).get("Networks") or {}
    return (nets.get(network) or {}).get("IPAddress", "")


def addresses(ctx: Context, network: str) -> dict[str, str]:
    """Each up shard of the group found on the daemon (``ctx.state``) with its address on the
    macvlan network, by shard name (for ``ps``)."""
    out = {}
    for st in ctx.state.shards if ctx.state is not None else []:
        if st.up and st.id:
            ip = address(unless_gone(ctx.docker.inspect_container, st.id) or {}, network)
            if ip:
                out[st.name] = ip
    return out


def loopback_script(vips: Iterable[str]) -> str:
    """The step's shell script: each missing VIP added to lo (``added VIP`` printed), one already
    there left alone. Two steps may run at once in one namespace (tesson's own after a start, and
    the VIP agent's on that start's event): an ``ip addr add`` that fails is forgiven when the
    address is there after all; any other failure ends the script non-zero with ip's own message."""
    def one(v: str) -> str:
        there = f'[ -n "$(ip -o -4 addr show dev lo to {v}/32)" ]'
        return f"{{ {there} || {{ ip addr add {v}/32 dev lo && echo added {v}; }} || {there}; }}"

    return " && ".join(one(v) for v in sorted(set(vips)))


def loopback_steps(client: Any, image: str, shard_ids: dict[str, str], vips: list[str], labels: dict) -> dict[str, str | bool]:
    """The one-shot NET_ADMIN step (see the module's docstring) for every shard, concurrently.
    ``shard_ids``: shard name -> container id. Each shard's outcome, by name: True when its
    loopback lacked a VIP (added now), False when it had them all, else why the step failed."""
    script = loopback_script(vips)

    def one(item: tuple[str, str]) -> str | bool:
        name, cid = item
        host_config = client.create_host_config(network_mode=f"container:{cid}", cap_drop=["ALL"],
                                                cap_add=["NET_ADMIN"], security_opt=["no-new-privileges"])
        step = None
        try:
            step = client.create_container(image, entrypoint=["sh", "-c", script], command=[],
                                           labels={**labels, L.ROLE: L.ROLE_LO_STEP},
                                           host_config=host_config)["Id"]
            client.start(step)
            code = client.wait(step, timeout=60).get("StatusCode")
            out = (client.logs(step, stdout=True, stderr=True, tail=5) or b"").decode(errors="replace")
            if code != 0:
                return " ".join(out.split()) or f"exit {code}"
            return "added " in out
        except Exception as e:
            return explain(e)
        finally:
            if step is not None:
                try:
                    remove_container(client, step)
                except Exception:
                    pass

    items = sorted(shard_ids.items())
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(items)))) as pool:
        return dict(zip((name for name, _ in items), pool.map(one, items)))


def put_vip_on_loopback(client: Any, image: str, shard_ids: dict[str, str], vips: list[str], labels: dict) -> list[str]:
    """:func:`loopback_steps`, for tesson's own starts: the names of the shards whose loopback
    lacked a VIP (a shard that had them all is left as it was); TessonError naming the first
    shard whose step failed."""
    done = loopback_steps(client, image, shard_ids, vips, labels)
    errors = [f"{name}: {why}" for name, why in done.items() if isinstance(why, str)]
    if errors:
        raise TessonError(f"could not put the service address on the shards' loopback ({image}): {errors[0]}")
    return [name for name, added in done.items() if added is True]
