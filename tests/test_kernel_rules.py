"""The kernel front door's rule writer, loaded into the real kernel and read back.

Everything happens in network namespaces this module makes (a stand-in "host" with a bridge, two
backends, an outside client on a veth pair, addresses from 198.18.0.0/15): the machine's own
rules are never touched. Needs root, ``ip`` and ``nft``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tesson.frontend import kernel_rules as K
from tests import netlab
from tests.conftest import ROOT, require

BRIDGE = "br-ktest"
DOORS = [K.Door("tcp", 8080, 80), K.Door("udp", 5353, 53), K.Door("tcp", 9090, 90, "127.0.0.1")]
B0, B1 = K.Backend("g-0", "198.19.0.2"), K.Backend("g-1", "198.19.0.3")


@pytest.fixture(scope="module")
def lab():
    require(os.geteuid() == 0 and shutil.which("nft") and shutil.which("ip"),
            "needs root, nft (apt-get install nftables) and ip")
    lab = netlab.Lab("ktr")
    try:
        host = lab.netns("host")
        netlab.ip("link", "add", BRIDGE, "type", "bridge", ns=host)
        netlab.ip("addr", "add", "198.19.0.1/24", "dev", BRIDGE, ns=host)
        netlab.ip("link", "set", BRIDGE, "up", ns=host)
        for i, b in enumerate((B0, B1)):
            ns = lab.netns(f"b{i}")
            lab.veth(host, f"vb{i}", ns, "eth0")
            netlab.ip("link", "set", f"vb{i}", "master", BRIDGE, ns=host)
            netlab.ip("addr", "add", f"{b.address}/24", "dev", "eth0", ns=ns)
            netlab.ip("route", "add", "default", "via", "198.19.0.1", ns=ns)
            for port in (80, 90):
                lab.server(ns, b.name, port)
            lab.server(ns, b.name, 53, "udp")
        client = netlab.client_pair(lab, "vc0", host_ns=host)
        netlab.in_ns(host, ["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        lab.host, lab.client = host, client
        yield lab
    finally:
        lab.close()


def nft(lab, *args: str, doc: dict | None = None) -> str:
    r = netlab.in_ns(lab.host, ["nft", *args], input=json.dumps(doc) if doc is not None else None)
    assert r.returncode == 0, r.stderr
    return r.stdout


def load(lab, doc: dict) -> None:
    nft(lab, "-j", "-f", "-", doc=doc)


def table(lab, group: str = "g") -> dict:
    return json.loads(nft(lab, "-j", "list", "table", "ip", K.table_name(group)))


def set_localnet(lab, on: bool) -> None:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tesson import nft; nft.set_route_localnet({BRIDGE!r}, {on!r})"
    r = netlab.in_ns(lab.host, [sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr


def test_render_loads_and_reads_back(lab):
    load(lab, K.render("g", BRIDGE, DOORS, [B0, B1], docker_user=False))
    got = K.read(table(lab))
    assert got["doors"] == DOORS
    assert got["backends"] == [B0.address, B1.address]
    assert got["chains"] == ["prerouting", "output", "postrouting", "martians"]
    assert got["martians"] and got["loopback_masquerade"]
    text = nft(lab, "list", "table", "ip", "tesson-g")
    # the loopback-only door has no prerouting rule: nothing from outside reaches it
    pre = text.split("chain prerouting")[1].split("chain output")[0]
    assert "dport 9090" not in pre and "ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080" in pre
    assert "numgen inc mod 2 map { 0 : 198.19.0.2, 1 : 198.19.0.3 }" in text


def test_rewrite_replaces_the_whole_table_atomically(lab):
    load(lab, K.render("g", BRIDGE, DOORS, [B0, B1], docker_user=False))
    load(lab, K.render("g", BRIDGE, DOORS, [B1], docker_user=False))
    got = K.read(table(lab))
    assert got["backends"] == [B1.address] and got["doors"] == DOORS
    assert nft(lab, "list", "tables").split().count("tesson-g") == 1
    load(lab, K.render("g", BRIDGE, DOORS, [], docker_user=False))
    got = K.read(table(lab))
    assert got["backends"] == [] and got["doors"] == [] and got["martians"]  # out of rotation, still guarded


def test_round_robin_from_an_outside_client_tcp_and_udp(lab):
    load(lab, K.render("g", BRIDGE, DOORS, [B0, B1], docker_user=False))
    tcp = [netlab.ask(lab.client, "198.18.0.1", 8080) for _ in range(6)]
    names = [a.split()[0] for a in tcp]
    assert sorted(names) == ["g-0"] * 3 + ["g-1"] * 3 and names[0] != names[1], tcp
    assert all(a.split()[1] == "198.18.0.2" for a in tcp)  # the shard sees the client itself
    udp = {netlab.ask(lab.client, "198.18.0.1", 5353, "udp").split()[0] for _ in range(4)}
    assert udp == {"g-0", "g-1"}
    # the loopback-only door is not a door from outside
    assert netlab.ask(lab.client, "198.18.0.1", 9090, timeout=1) == ""


HOLD = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print("connected", flush=True)
sys.stdin.readline()
s.sendall(b"hi")
print(s.recv(1024).decode(), flush=True)
"""


def test_a_shard_taken_out_keeps_its_established_connections_and_gets_no_new_one(lab):
    """What scale and update rely on: the rewrite without a shard (its index held) sends new
    connections elsewhere at once, while one already open goes on with it (conntrack)."""
    shards = [(0, B0), (1, B1)]
    load(lab, K.render("g", BRIDGE, DOORS, K.rotation(shards), docker_user=False))
    held = subprocess.Popen(["ip", "netns", "exec", lab.client, sys.executable, "-c", HOLD, "198.18.0.1", "8080"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout.readline().strip() == "connected"  # numgen starts at entry 0 of a new table: g-0
        load(lab, K.render("g", BRIDGE, DOORS, K.rotation(shards, held=[0]), docker_user=False))
        assert K.read(table(lab))["backends"] == [B1.address]
        fresh = [netlab.ask(lab.client, "198.18.0.1", 8080).split()[0] for _ in range(4)]
        assert fresh == ["g-1"] * 4
        held.stdin.write("go\n")
        held.stdin.flush()
        assert held.stdout.readline().split()[0] == "g-0"  # the open connection still reaches its shard
    finally:
        held.kill()
        held.wait(timeout=5)


def test_rotation_leaves_out_held_shards_by_index_and_everything_when_drained():
    b2 = K.Backend("g-2", "198.19.0.4")
    shards = [(2, b2), (0, B0), (1, B1)]
    assert K.rotation(shards) == [B0, B1, b2]  # by index, whatever order the daemon listed them in
    assert K.rotation(shards, held=[1]) == [B0, b2]
    assert K.rotation(shards, held={0, 1, 2, 7}) == []  # an index with no shard (yet) is fine
    assert K.rotation(shards, drained=True) == []


def test_loopback_door_and_martians(lab):
    load(lab, K.render("g", BRIDGE, DOORS, [B0, B1], docker_user=False))
    set_localnet(lab, True)
    try:
        answers = [netlab.ask(lab.host, "127.0.0.1", port) for port in (8080, 8080, 9090)]
        assert {a.split()[0] for a in answers[:2]} == {"g-0", "g-1"}, answers
        assert all(a.split()[1] == "198.19.0.1" for a in answers), answers  # masqueraded to the bridge
        # a packet for 127.0.0.1 from outside is not answered (the positive control is)
        host_mac = netlab.mac_of("vc0", lab.host)
        assert netlab.probe_syn(lab.client, "eth0", host_mac, "198.18.0.2", "198.18.0.1", 8080) == "synack"
        assert netlab.probe_syn(lab.client, "eth0", host_mac, "198.18.0.2", "127.0.0.1", 8080) == "no"
        # nor from the bridge, where route_localnet is on: the martians rule drops it
        lab.server(lab.host, "host-loopback", 7070)  # listens on 0.0.0.0:7070 in the "host"
        bridge_mac = netlab.mac_of(BRIDGE, lab.host)
        assert netlab.probe_syn("ktr-b0", "eth0", bridge_mac, B0.address, "198.19.0.1", 7070) == "synack"
        assert netlab.probe_syn("ktr-b0", "eth0", bridge_mac, B0.address, "127.0.0.1", 7070) == "no"
        # ...and it is that rule: without it, route_localnet on the bridge would let the packet in
        nft(lab, "delete", "chain", "ip", "tesson-g", "martians")
        assert netlab.probe_syn("ktr-b0", "eth0", bridge_mac, B0.address, "127.0.0.1", 7070) == "synack"
    finally:
        set_localnet(lab, False)


def test_docker_user_rules_are_narrow_and_iptables_reads_them(lab):
    require(shutil.which("iptables") is not None, "needs iptables (iptables-nft)")
    host = lab.host
    for argv in (["iptables", "-N", "DOCKER-USER"], ["iptables", "-A", "DOCKER-USER", "-j", "RETURN"]):
        netlab.in_ns(host, argv, check=True)
    try:
        load(lab, K.render("g", BRIDGE, DOORS, [B0, B1]))
        chain = json.loads(nft(lab, "-j", "list", "chain", "ip", "filter", "DOCKER-USER"))
        first = K.handles("g", chain)
        assert len(first) == 4  # 2 shards x (80/tcp, 53/udp); the loopback-only door needs none
        r = netlab.in_ns(host, ["iptables", "-S", "DOCKER-USER"], check=True)
        rules = [ln for ln in r.stdout.splitlines() if "tesson-g" in ln]
        assert len(rules) == 4
        assert f"-A DOCKER-USER -d 198.19.0.2/32 ! -i {BRIDGE} -o {BRIDGE} -p tcp -m tcp --dport 80 -m comment --comment tesson-g -j ACCEPT" in rules
        assert r.stdout.splitlines()[-1] == "-A DOCKER-USER -j RETURN"  # ours go first, Docker's RETURN stays
        # a rewrite with one shard replaces them, in the same transaction as the table
        load(lab, K.render("g", BRIDGE, DOORS, [B1], old_handles=first))
        chain = json.loads(nft(lab, "-j", "list", "chain", "ip", "filter", "DOCKER-USER"))
        assert len(K.handles("g", chain)) == 2
        assert "198.19.0.2" not in netlab.in_ns(host, ["iptables", "-S", "DOCKER-USER"]).stdout
        # another group's rules are not ours
        assert K.handles("other", chain) == []
        # purge: no table, no rule
        load(lab, K.purge("g", K.handles("g", chain)))
        assert "tesson-g" not in nft(lab, "list", "tables")
        left = netlab.in_ns(host, ["iptables", "-S", "DOCKER-USER"]).stdout
        assert "tesson" not in left and "-A DOCKER-USER -j RETURN" in left
    finally:
        netlab.in_ns(host, ["nft", "delete", "table", "ip", "filter"])


@pytest.mark.parametrize("args, needle", [
    (("g;drop", BRIDGE, [], []), "group name"),
    (("g", "br x", [], []), "bridge name"),
    (("g", 'br"', [], []), "bridge name"),
    (("g", BRIDGE, [K.Door("sctp", 1, 1)], []), "protocol"),
    (("g", BRIDGE, [K.Door("tcp", 0, 1)], []), "host port"),
    (("g", BRIDGE, [K.Door("tcp", 1, 70000)], []), "port"),
    (("g", BRIDGE, [K.Door("tcp", 1, 1, "::1")], []), "host address"),
    (("g", BRIDGE, [K.Door("tcp", 1, 1), K.Door("tcp", 1, 2)], []), "published twice"),
    (("g", BRIDGE, [], [K.Backend("x", "172.18.0.2 } ; flush ruleset")]), "not an IPv4 address"),
])
def test_check_refuses_what_may_not_reach_a_rule(args, needle):
    with pytest.raises(ValueError, match=needle):
        K.render(*args)
