"""The kernel front door's rules: (group, bridge, doors, backends) -> one libnftables JSON document.

Pure functions, no I/O. :func:`render` writes everything of a group in one transaction;
:func:`purge` takes it all away; :func:`read` reads a table back from ``nft -j list table``.

The algorithm (the shape kube-proxy's nftables mode uses for Services)
-----------------------------------------------------------------------
Each published port ("door": protocol, host address, host port -> container port) becomes one rule
in each of two NAT chains of the table ``ip tesson-GROUP``::

    prerouting (nat, dstnat): ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080
                              dnat to numgen inc mod N map { 0 : SHARD0, 1 : SHARD1, ... } : 80
    output     (nat, dstnat): fib daddr type local tcp dport 8080  dnat to (the same map) : 80

``prerouting`` serves packets arriving on any interface (other machines, a client namespace),
``output`` serves processes on this host, to any of its addresses including ``127.0.0.1``. A door
bound to one address (``-p 10.0.0.5:8080:80``) matches ``ip daddr 10.0.0.5`` instead of the fib
test; a loopback-only door (``-p 127.0.0.1:8080:80``) has no prerouting rule at all.

Spreading: ``numgen inc`` is a round-robin counter per rule, so N shards each get every N-th new
connection. Round robin, not ``numgen random``: with the few long-lived connections a benchmark or
a connection pool opens (32 over 2 shards) random choice leaves one shard visibly busier than the
other; with many short connections the two behave the same. Only new connections pass NAT
chains: an established connection keeps its shard in conntrack, whatever the rules say later.

Loopback (why ``route_localnet`` is safe here): a connection to 127.0.0.1 that ``output`` rewrites
to a shard leaves through the group's bridge with source 127.0.0.1, which the kernel refuses unless
``route_localnet`` is on for that interface. The agent turns it on for the group's bridge only
(never ``all``, never a host interface: it vanishes with the bridge), and only after this table is
in place, with two rules that keep it harmless:

- ``postrouting`` (nat, srcnat): ``oifname BR ip saddr 127.0.0.0/8 masquerade`` -- the shard sees
  the bridge's own address, and its reply comes back to it (conntrack turns it back into 127.0.0.1);
- ``martians`` (filter, prerouting, priority -150, before NAT undoes the masquerade):
  ``iifname BR ip daddr 127.0.0.0/8 drop`` -- a packet *sent* to 127.0.0.0/8 by anything on the
  bridge is dropped (the CVE-2020-8558 shape: a neighbour reaching the host's loopback services).
  Legitimate replies carry the bridge's address at that point, so they pass.

Packets from other interfaces to 127.0.0.0/8 stay martians (their interfaces keep route_localnet
off), and ``prerouting`` never matches them (``ip daddr != 127.0.0.0/8``).

Hairpin: a shard reaching the group's own door (host address:8080) may be sent to itself or a
sibling on the same bridge, which would answer straight back, from the wrong address: ``postrouting``
masquerades DNATed connections that enter and leave by the bridge (``ct status dnat``).

Docker's firewall: Docker's FORWARD chain (policy drop) accepts only its own published ports, so a
connection from another machine DNATed to a shard would be dropped there. Each (shard address,
container port, protocol) gets the narrowest accept in ``DOCKER-USER`` (the chain Docker keeps for
user rules, which FORWARD jumps to first), the same match Docker writes for a published port::

    iifname != BR oifname BR ip daddr SHARD tcp dport 80 accept comment "tesson-GROUP"

Which shards are in the map (:func:`rotation`): the running, healthy ones (without a Docker
healthcheck: found accepting connections, :mod:`kernel_listen`; the daemon's list is read by
:func:`kernel_table.shards`), less those a ``scale`` or ``update`` holds out (a shard being
drained, a successor or a new shard not yet proven healthy).
Taking a shard out is a rewrite without it; its established connections keep their conntrack
entry, so they go on until the shard (or the client) closes them.

Hazards
-------
- ``DOCKER-USER`` belongs to iptables (``iptables-nft``'s table ``ip filter``). A rule there that
  iptables cannot read back (native ``ct status``, a set) makes ``iptables -S`` fail for the whole
  chain ("incompatible, use 'nft' tool"), which Docker itself runs into. So those rules use only
  what iptables writes too: interface names, ``ip daddr``, ``tcp dport`` and a comment, and are
  found again by their comment (iptables shows it as ``-m comment``).
- Atomic replacement: the document is ``add table; delete table; add table ...``, one transaction
  (the first ``add`` lets ``delete`` succeed when the table does not exist yet); packets see the old
  table or the new one, never a half-written map. The ``DOCKER-USER`` rules are deleted by handle
  in the same transaction, so the caller lists them just before; if one vanished meanwhile the
  transaction fails whole and the caller lists and tries again.
- A rewrite restarts ``numgen inc``'s counter (a new rule): the next connection goes to map entry 0.
- Priorities: the NAT chains sit at ``dstnat`` beside Docker's own; they only match the group's
  host ports, which the run checks nobody else holds (and the agent holds with bound sockets).
- Every value comes in validated (:func:`check`): group name, bridge name, IPv4 addresses,
  ports, protocols. Nothing here is parsed by a shell or by nft's own language: the document is JSON.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FAMILY = "ip"
TABLE_PREFIX = "tesson-"
PROTOCOLS = ("tcp", "udp")
LOOPBACK = "127.0.0.0/8"
PRIO_DSTNAT = -100
PRIO_SRCNAT = 100
PRIO_MARTIANS = -150  # mangle: after conntrack (-200), before NAT (-100) rewrites a reply's address
DOCKER_USER = ("filter", "DOCKER-USER")  # iptables-nft's table (family ip) and Docker's user chain

_GROUP_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")  # Docker's container names, tesson's length
_IFNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")  # IFNAMSIZ - 1


@dataclass(frozen=True)
class Door:
    """One published port: ``host_ip:host_port -> port/proto`` (``host_ip`` "" = every address)."""

    proto: str
    host_port: int
    port: int
    host_ip: str = ""

    def __str__(self) -> str:
        from tesson.ports import display

        return display(self.host_ip, self.host_port, self.port, self.proto)


@dataclass(frozen=True)
class Backend:
    """One shard in rotation: its name (for people) and its IPv4 address on the group's bridge."""

    name: str
    address: str


def rotation(shards: Iterable[tuple[int, Backend]], held: Iterable[int] = (), drained: bool = False) -> list[Backend]:
    """The backends of the map, in shard order: every ``(index, backend)`` of ``shards`` (the running,
    healthy or listening shards: :func:`kernel_table.shards`) except the indexes ``held`` out by a ``scale`` or ``update`` (draining, or new and
    not yet proven healthy); none at all when the group is ``drained`` (``stop``).

    Held by index, not by container: an ``update`` takes shard 3 out, stops it and starts its
    successor under the same index, which must stay out until the change puts it in, however
    healthy it looks to the daemon. A shard that stops leaves the map whether held or not (it is
    no longer in ``shards``)."""
    if drained:
        return []
    out = set(held)
    return [b for i, b in sorted(shards, key=lambda s: s[0]) if i not in out]


def table_name(group: str) -> str:
    return TABLE_PREFIX + group


def comment(group: str) -> str:
    """The comment on the group's DOCKER-USER rules: how they are found again."""
    return TABLE_PREFIX + group


def check(group: str, bridge: str | None, doors: Sequence[Door], backends: Sequence[Backend]) -> None:
    """ValueError naming the first value that may not reach a rule."""
    if not isinstance(group, str) or not _GROUP_RE.match(group):
        raise ValueError(f"group name {group!r} is not a valid tesson group name")
    if bridge is not None and (not isinstance(bridge, str) or not _IFNAME_RE.match(bridge)):
        raise ValueError(f"bridge name {bridge!r} is not an interface name")
    seen = set()
    for d in doors:
        if d.proto not in PROTOCOLS:
            raise ValueError(f"protocol {d.proto!r} (the kernel front door does {' and '.join(PROTOCOLS)})")
        for what, n in (("host port", d.host_port), ("port", d.port)):
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 65535:
                raise ValueError(f"{what} {n!r} is not a port number")
        if d.host_ip:
            _ipv4(d.host_ip, "host address")
        key = (d.proto, d.host_port)
        if key in seen:
            raise ValueError(f"host port {d.host_port}/{d.proto} is published twice")
        seen.add(key)
    for b in backends:
        _ipv4(b.address, f"address of {b.name}")


def _ipv4(text: str, what: str) -> None:
    try:
        ipaddress.IPv4Address(text)
    except (ValueError, TypeError):
        raise ValueError(f"{what} {text!r} is not an IPv4 address") from None


def _is_loopback(ip: str) -> bool:
    return bool(ip) and ipaddress.IPv4Address(ip).is_loopback


def _serves_loopback(d: Door) -> bool:
    return not d.host_ip or _is_loopback(d.host_ip)


# -- expression helpers (libnftables JSON) ------------------------------------------------------

def _match(left: object, right: object, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, field: str) -> dict:
    return {"payload": {"protocol": protocol, "field": field}}


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _loopback_net() -> dict:
    return {"prefix": {"addr": "127.0.0.0", "len": 8}}


def _dnat(door: Door, backends: Sequence[Backend]) -> dict:
    entries = [[i, b.address] for i, b in enumerate(backends)]
    return {"dnat": {
        "addr": {"map": {"key": {"numgen": {"mode": "inc", "mod": len(entries), "offset": 0}},
                         "data": {"set": entries}}},
        "port": door.port,
    }}


def _door_rules(table: str, door: Door, backends: Sequence[Backend]) -> list[dict]:
    """The door's rule in ``prerouting`` (unless loopback-only) and in ``output``."""
    dport = _match(_payload(door.proto, "dport"), door.host_port)
    out = []
    for chain in ("prerouting", "output"):
        if door.host_ip:
            if chain == "prerouting" and _is_loopback(door.host_ip):
                continue
            where = [_match(_payload("ip", "daddr"), door.host_ip)]
        else:
            where = [_match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")]
            if chain == "prerouting":
                where.insert(0, _match(_payload("ip", "daddr"), _loopback_net(), "!="))
        out.append(_rule(table, chain, [*where, dport, _dnat(door, backends)], f"door {door}"))
    return out


def _rule(table: str, chain: str, expr: list, note: str) -> dict:
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": chain, "expr": expr, "comment": note}}}


def _chain(table: str, name: str, kind: str, hook: str, prio: int) -> dict:
    return {"add": {"chain": {"family": FAMILY, "table": table, "name": name, "type": kind,
                              "hook": hook, "prio": prio, "policy": "accept"}}}


def docker_user_rules(group: str, bridge: str, doors: Sequence[Door], backends: Sequence[Backend]) -> list[dict]:
    """The narrowest accepts in DOCKER-USER: one per (shard address, container port, protocol)."""
    table, chain = DOCKER_USER
    wanted = sorted({(d.proto, d.port) for d in doors if not (d.host_ip and _is_loopback(d.host_ip))})
    out = []
    for b in backends:
        for proto, port in wanted:
            expr = [
                _match(_meta("iifname"), bridge, "!="),
                _match(_meta("oifname"), bridge),
                _match(_payload("ip", "daddr"), b.address),
                _match(_payload(proto, "dport"), port),
                {"accept": None},
            ]
            out.append({"insert": {"rule": {"family": FAMILY, "table": table, "chain": chain,
                                            "expr": expr, "comment": comment(group)}}})
    return out


def _delete_rules(handles: Iterable[int]) -> list[dict]:
    table, chain = DOCKER_USER
    return [{"delete": {"rule": {"family": FAMILY, "table": table, "chain": chain, "handle": h}}}
            for h in sorted(set(handles))]


def render(group: str, bridge: str, doors: Sequence[Door], backends: Sequence[Backend], docker_user: bool = True,
           old_handles: Iterable[int] = ()) -> dict:
    """The whole group in one transaction: its table replaced, its DOCKER-USER rules rewritten.

    ``doors``: :class:`Door` per published port; ``backends``: :class:`Backend` in rotation, in
    order (map entry i is ``backends[i]``; none: the doors have no rule, a connection finds nothing
    listening). ``docker_user``: whether Docker's ``DOCKER-USER`` chain exists (accepts go there);
    ``old_handles``: the handles of the group's current rules there (:func:`handles`), deleted.
    """
    doors, backends = list(doors), list(backends)
    check(group, bridge, doors, backends)
    table = table_name(group)
    ref = {"family": FAMILY, "name": table}
    cmds: list[dict] = [{"add": {"table": dict(ref)}}, {"delete": {"table": dict(ref)}}, {"add": {"table": dict(ref)}}]
    cmds += [
        _chain(table, "prerouting", "nat", "prerouting", PRIO_DSTNAT),
        _chain(table, "output", "nat", "output", PRIO_DSTNAT),
        _chain(table, "postrouting", "nat", "postrouting", PRIO_SRCNAT),
        _chain(table, "martians", "filter", "prerouting", PRIO_MARTIANS),
    ]
    cmds.append(_rule(table, "martians", [
        _match(_meta("iifname"), bridge),
        _match(_payload("ip", "daddr"), _loopback_net()),
        {"drop": None},
    ], "nothing on the bridge may reach 127.0.0.0/8 (route_localnet is on for it)"))
    if any(_serves_loopback(d) for d in doors):
        cmds.append(_rule(table, "postrouting", [
            _match(_meta("oifname"), bridge),
            _match(_payload("ip", "saddr"), _loopback_net()),
            {"masquerade": None},
        ], "loopback clients: the shard answers the bridge's address"))
    cmds.append(_rule(table, "postrouting", [
        _match(_meta("iifname"), bridge),
        _match(_meta("oifname"), bridge),
        _match({"ct": {"key": "status"}}, "dnat", "in"),
        {"masquerade": None},
    ], "hairpin: a shard reaching the group's door"))
    if backends:
        for d in doors:
            cmds += _door_rules(table, d, backends)
    if docker_user:
        cmds += _delete_rules(old_handles)
        cmds += docker_user_rules(group, bridge, doors, backends)
    return {"nftables": cmds}


def purge(group: str, old_handles: Iterable[int] = (), table_exists: bool = True) -> dict:
    """Remove the group's table and its DOCKER-USER rules (by handle), in one transaction."""
    check(group, None, (), ())
    cmds: list[dict] = []
    if table_exists:
        cmds.append({"delete": {"table": {"family": FAMILY, "name": table_name(group)}}})
    cmds += _delete_rules(old_handles)
    return {"nftables": cmds}


# -- reading back ---------------------------------------------------------------------------------

def handles(group: str, chain_listing: dict) -> list[int]:
    """The handles of the group's rules in a ``nft -j list chain ip filter DOCKER-USER`` listing."""
    want = comment(group)
    return sorted(r["handle"] for r in _items(chain_listing, "rule") if r.get("comment") == want)


def _items(listing: dict, kind: str) -> list[dict]:
    return [item[kind] for item in (listing or {}).get("nftables", []) if kind in item]


def read(listing: dict) -> dict:
    """What a ``nft -j list table ip tesson-GROUP`` listing does, for ``ps`` and tests.

    ``{"doors": [Door...], "backends": [address...], "chains": [name...], "martians": bool,
    "loopback_masquerade": bool}``: the doors that have a DNAT rule (from ``output``, which every
    door has) and the addresses of their rotation (the first door's; :func:`render` writes one map
    for all).
    """
    chains = [c["name"] for c in _items(listing, "chain")]
    doors: list[Door] = []
    backends: list[str] | None = None
    martians = masq = False
    for r in _items(listing, "rule"):
        expr = r.get("expr") or []
        if r.get("chain") == "martians" and any("drop" in e for e in expr):
            martians = True
        if r.get("chain") == "postrouting" and any(_is_saddr_loopback(e) for e in expr):
            masq = True
        if r.get("chain") != "output":
            continue
        dnat = next((e["dnat"] for e in expr if "dnat" in e), None)
        if dnat is None:
            continue
        proto, host_port, host_ip = "", 0, ""
        for e in expr:
            m = e.get("match") or {}
            payload = (m.get("left") or {}).get("payload") or {}
            if payload.get("field") == "dport":
                proto, host_port = str(payload.get("protocol")), int(m.get("right") or 0)
            elif payload.get("field") == "daddr" and isinstance(m.get("right"), str) and m.get("op") == "==":
                host_ip = m["right"]
        data = (((dnat.get("addr") or {}).get("map") or {}).get("data") or {}).get("set") or []
        addrs = [a for _, a in sorted((int(k), v) for k, v in data)]
        if backends is None:
            backends = addrs
        doors.append(Door(proto=proto, host_port=host_port, port=int(dnat.get("port") or 0), host_ip=host_ip))
    return {"doors": doors, "backends": backends or [], "chains": chains, "martians": martians,
            "loopback_masquerade": masq}


def _is_saddr_loopback(e: dict) -> bool:
    m = e.get("match") or {}
    return ((m.get("left") or {}).get("payload") or {}).get("field") == "saddr" and m.get("right") == _loopback_net()
