"""``run --gorb URI --gorb-forward dr``: IPVS direct routing over a macvlan network (issue 16).

The macvlan parent is one end of a veth pair made by the test (198.18.0.1/24, TEST-NET
benchmarking addresses, never this machine's LAN); the other end sits in a network namespace made
by the test, the client. The Gorb stand-in's recorded state shows the services and the dr backends
at the shards' macvlan addresses; each shard's loopback address and ARP settings are read from
inside its network namespace; the client reaches every shard's macvlan address directly, and ARP
for the service address is answered by the parent only. A shard Docker restarts by itself gets
the service address back from the group's VIP agent, without repair.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import parse_shard_answer, require, tesson_cmd
from tests.gorb_standin.fixtures import *  # noqa: F403

pytestmark = pytest.mark.docker

PARENT, PEER, NETNS = "t16dr0", "t16dr1", "t16drcli"
PARENT_IP, CLIENT_IP, RANGE = "198.18.0.1", "198.18.0.2", "198.18.0.64/26"
NO_ENV_GORB = {"GORB_URI": ""}


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"
    return r


def _cleanup_links() -> None:
    sh("ip", "link", "del", PARENT, check=False)
    sh("ip", "netns", "del", NETNS, check=False)
    sh("ip", "link", "del", "t16nov4", check=False)


@pytest.fixture(scope="module")
def wire():
    """The veth pair: PARENT (198.18.0.1/24) here, PEER (198.18.0.2/24) in the client's netns."""
    require(os.geteuid() == 0, "making a veth pair and a network namespace needs root")
    _cleanup_links()
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", PARENT, "type", "veth", "peer", "name", PEER)
    sh("ip", "link", "set", PEER, "netns", NETNS)
    sh("ip", "addr", "add", f"{PARENT_IP}/24", "dev", PARENT)
    sh("ip", "link", "set", PARENT, "up")
    sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{CLIENT_IP}/24", "dev", PEER)
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", PEER, "up")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
    yield
    _cleanup_links()


@pytest.fixture
def group(request, docker_client):
    name = f"t16dr-{request.node.name.split('[')[0].replace('test_', '')[:14].replace('_', '-')}-{os.getpid() % 100000}"
    yield name
    for c in docker_client.containers(all=True, filters={"label": [f"io.tesson.group={name}"]}):
        docker_client.remove_container(c["Id"], force=True, v=True)
    for n in docker_client.networks(names=[f"tesson-macvlan-{PARENT}"]):
        if not docker_client.inspect_network(n["Id"]).get("Containers"):
            docker_client.remove_network(n["Id"])


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def in_shard(docker_client, name: str, *cmd: str) -> str:
    pid = docker_client.inspect_container(name)["State"]["Pid"]
    return sh("nsenter", "-t", str(pid), "-n", *cmd).stdout


def in_client(code: str) -> str:
    return sh("ip", "netns", "exec", NETNS, sys.executable, "-c", textwrap.dedent(code)).stdout


ARP_ASK = """
import socket, struct, time, fcntl
dev, target = {dev!r}, {target!r}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((dev, 0))
mac = fcntl.ioctl(s.fileno(), 0x8927, struct.pack("256s", dev.encode()))[18:24]
me = socket.inet_aton({me!r})
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, me, b"\\0" * 6, socket.inet_aton(target))
s.send(b"\\xff" * 6 + mac + b"\\x08\\x06" + arp)
s.settimeout(0.2)
seen, end = set(), time.time() + 1.0
while time.time() < end:
    try:
        frame = s.recv(2048)
    except socket.timeout:
        continue
    if len(frame) < 42:
        continue
    op, sha, spa = struct.unpack_from("!6xH6s4s", frame, 14)
    if op == 2 and socket.inet_ntoa(spa) == target:
        seen.add(sha.hex(":"))
print(" ".join(sorted(seen)))
"""


def arp_answers(target: str) -> set[str]:
    return set(in_client(ARP_ASK.format(dev=PEER, target=target, me=CLIENT_IP)).split())


def test_dr_group_over_macvlan(wire, gorb, group, shard_image, tesson_image, docker_client):
    ok(tesson_cmd("--gorb", gorb.uri(PARENT), "run", "-g", group, "-n", "2", "--gorb-forward", "dr",
                      "--macvlan-range", RANGE, "-p", "8080", shard_image, env=NO_ENV_GORB))
    net = f"tesson-macvlan-{PARENT}"
    info = docker_client.inspect_network(net)
    assert info["Driver"] == "macvlan" and info["Options"]["parent"] == PARENT
    assert info["Labels"]["io.tesson.role"] == "macvlan" and info["IPAM"]["Config"][0]["IPRange"] == RANGE
    shards = {i: f"{group}-{i}" for i in (0, 1)}
    addr = {i: docker_client.inspect_container(n)["NetworkSettings"]["Networks"][net]["IPAddress"] for i, n in shards.items()}
    import ipaddress

    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(RANGE) for a in addr.values()) and len(set(addr.values())) == 2
    # Gorb: the service at the VIP (the device's address), the shards' macvlan addresses as dr backends
    vs = f"{group}-8080-tcp"
    state = gorb.state()
    assert state["services"][vs]["options"]["host"] == PARENT_IP and state["services"][vs]["options"]["port"] == 8080
    for i in (0, 1):
        rs = gorb.call("GET", f"/service/{vs}/{group}-{i}-8080-tcp")[1]["options"]
        assert (rs["host"], rs["port"], rs["method"]) == (addr[i], 8080, "dr")
    # inside each shard's namespace: the VIP on lo, ARP settings as IPVS DR needs, no published port
    for name in shards.values():
        assert f"inet {PARENT_IP}/32" in in_shard(docker_client, name, "ip", "-4", "addr", "show", "dev", "lo")
        assert in_shard(docker_client, name, "cat", "/proc/sys/net/ipv4/conf/all/arp_ignore").strip() == "1"
        assert in_shard(docker_client, name, "cat", "/proc/sys/net/ipv4/conf/all/arp_announce").strip() == "2"
        hc = docker_client.inspect_container(name)["HostConfig"]
        assert not hc.get("PortBindings") and not hc.get("CapAdd")  # the app itself holds no NET_ADMIN
    # the client on the wire reaches each shard's own address directly
    for i in (0, 1):
        page = in_client(f"""
            import time, urllib.request
            end = time.time() + 10
            while True:
                try:
                    print(urllib.request.urlopen("http://{addr[i]}:8080/cgi-bin/id", timeout=2).read().decode()); break
                except OSError:
                    if time.time() > end: raise
                    time.sleep(0.2)
        """)
        assert parse_shard_answer(page)["uid"] == str(i)
    # ARP: a shard answers for its own address, but for the VIP only the parent does
    parent_mac = open(f"/sys/class/net/{PARENT}/address").read().strip()
    shard_macs = {docker_client.inspect_container(n)["NetworkSettings"]["Networks"][net]["MacAddress"] for n in shards.values()}
    assert arp_answers(addr[0]) & shard_macs
    assert arp_answers(PARENT_IP) == {parent_mac}
    # no loopback step left behind
    assert docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}", "io.tesson.role=lo-step"]}) == []
    # ps shows the macvlan addresses
    (doc,) = json.loads(ok(tesson_cmd("ps", "-g", group, "--json", env=NO_ENV_GORB)).stdout)
    assert doc["frontend"]["macvlan"]["addresses"] == {shards[i]: addr[i] for i in (0, 1)}
    table = ok(tesson_cmd("ps", "-g", group, env=NO_ENV_GORB)).stdout
    assert addr[0] in table and addr[1] in table
    # stop --purge: services withdrawn, and the macvlan network goes with the last container on it
    ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))
    assert gorb.state()["services"] == {}
    assert docker_client.networks(names=[net]) == []


def test_purge_keeps_the_macvlan_network_another_container_uses(wire, gorb, group, shard_image, tesson_image, docker_client):
    ok(tesson_cmd("--gorb", gorb.uri(PARENT), "run", "-g", group, "-n", "1", "--gorb-forward", "dr",
                  "--macvlan-range", RANGE, "-p", "8080", shard_image, env=NO_ENV_GORB))
    net = f"tesson-macvlan-{PARENT}"
    other = docker_client.create_container(shard_image, name=f"{group}-other",
                                           host_config=docker_client.create_host_config(network_mode=net))
    try:
        docker_client.start(other)
        ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))
        assert len(docker_client.networks(names=[net])) == 1
    finally:
        docker_client.remove_container(other, force=True)
    docker_client.remove_network(net)


def lo_vips(docker_client, name: str) -> list[str]:
    """The IPv4 addresses on a shard's loopback other than 127.0.0.1, read inside its namespace."""
    out = in_shard(docker_client, name, "ip", "-4", "-o", "addr", "show", "dev", "lo")
    return sorted(w.split()[3] for w in out.splitlines() if "127.0.0.1" not in w)


def dr_backends(gorb, group: str) -> dict[str, tuple]:
    """Gorb's backends of the group's 8080/tcp service: name -> (host, port, method)."""
    vs = f"{group}-8080-tcp"
    names = gorb.state()["services"][vs]["backends"]
    return {rs: (o["host"], o["port"], o.get("method")) for rs in names
            for o in [gorb.call("GET", f"/service/{vs}/{rs}")[1]["options"]]}


def macvlan_ip(docker_client, name: str) -> str:
    return docker_client.inspect_container(name)["NetworkSettings"]["Networks"][f"tesson-macvlan-{PARENT}"]["IPAddress"]


def wait_restarted(docker_client, name: str, old_pid: int) -> dict:
    """The shard's inspect once Docker has started it again (a new process), within 10 s."""
    for _ in range(500):
        now = docker_client.inspect_container(name)
        if now["State"]["Running"] and now["State"]["Pid"] not in (0, old_pid) and not now["State"]["Restarting"]:
            return now
        time.sleep(0.02)
    raise AssertionError(f"{name} was not restarted by Docker in 10 s")


def vip_back_after(docker_client, name: str, want: list[str], limit: float = 5.0) -> float:
    """Seconds from the shard's current start (Docker's StartedAt, the daemon's clock: this
    machine's) until its loopback has ``want``, read inside its namespace every 20 ms; fails after
    ``limit`` seconds."""
    from tesson.container import daemon_ns

    started = daemon_ns(docker_client.inspect_container(name)["State"]["StartedAt"]) / 1e9
    while True:
        if lo_vips(docker_client, name) == want:
            return time.time() - started
        assert time.time() - started < limit, f"{name}: no {want} on lo {limit} s after Docker started it"
        time.sleep(0.02)


def test_every_start_puts_the_vip_back_on_the_shards_loopback(wire, gorb, group, shard_image, tesson_image, docker_client):
    """Docker gives a container a new network namespace at every start (restart, stop + start,
    recreate, its restart policy): tesson's every start puts the VIP back, repair also on a shard
    Docker restarted by itself while the VIP agent was stopped, and shards made by scale and
    update get it and a dr backend."""
    ok(tesson_cmd("--gorb", gorb.uri(PARENT), "run", "-g", group, "-n", "2", "--gorb-forward", "dr",
                  "--macvlan-range", RANGE, "-p", "8080", shard_image, env=NO_ENV_GORB))
    want = [f"{PARENT_IP}/32"]
    shards = [f"{group}-0", f"{group}-1"]
    pids = {n: docker_client.inspect_container(n)["State"]["Pid"] for n in shards}
    assert all(lo_vips(docker_client, n) == want for n in shards)

    def backends_ok(names):
        assert dr_backends(gorb, group) == {f"{n}-8080-tcp": (macvlan_ip(docker_client, n), 8080, "dr") for n in names}

    # tesson restart: every shard stopped and started, new namespaces, the VIP back on each
    ok(tesson_cmd("restart", group, "-t", "1", env=NO_ENV_GORB))
    assert all(docker_client.inspect_container(n)["State"]["Pid"] != pids[n] for n in shards)
    assert all(lo_vips(docker_client, n) == want for n in shards)
    backends_ok(shards)
    # docker stop of one shard, then tesson start
    docker_client.stop(shards[1], timeout=1)
    r = ok(tesson_cmd("start", group, env=NO_ENV_GORB))
    assert f"restarted {shards[1]}" in r.stdout and lo_vips(docker_client, shards[1]) == want
    # docker rm -f of one shard, then tesson repair: recreated, VIP, backend at its (new) address
    docker_client.remove_container(shards[0], force=True)
    r = ok(tesson_cmd("repair", group, env=NO_ENV_GORB))
    assert f"recreated {shards[0]}" in r.stdout and lo_vips(docker_client, shards[0]) == want
    backends_ok(shards)
    # the shard's process dies while the group's VIP agent is stopped: Docker's restart policy
    # brings it back in a bare namespace, and nothing puts the VIP back; repair finds it without
    # the VIP and says so (the other shard had it: left alone), and makes the agent again
    docker_client.stop(f"{group}-vip", timeout=1)
    old = docker_client.inspect_container(shards[1])
    os.kill(old["State"]["Pid"], 9)
    now = wait_restarted(docker_client, shards[1], old["State"]["Pid"])
    assert now["RestartCount"] >= 1 and lo_vips(docker_client, shards[1]) == []
    r = ok(tesson_cmd("repair", group, env=NO_ENV_GORB))
    assert f"put the service address back on {shards[1]}'s loopback" in r.stdout, r.stdout
    assert f"recreated VIP agent {group}-vip (it was exited)" in r.stdout, r.stdout
    assert shards[0] not in r.stdout.replace(f"{shards[0]}-", "")  # its VIP was there: nothing said
    assert all(lo_vips(docker_client, n) == want for n in shards)
    # scale: the new shard gets the VIP and a dr backend at its macvlan address
    ok(tesson_cmd("scale", "-g", group, "-n", "3", env=NO_ENV_GORB))
    shards.append(f"{group}-2")
    assert lo_vips(docker_client, shards[2]) == want
    backends_ok(shards)
    # update: every successor gets the VIP and its backend
    ok(tesson_cmd("update", "-g", group, "-e", "T16=1", "--drain-timeout", "0.2", "-t", "1", env=NO_ENV_GORB))
    for n in shards:
        assert "T16=1" in docker_client.inspect_container(n)["Config"]["Env"] and lo_vips(docker_client, n) == want
    backends_ok(shards)
    assert docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}", "io.tesson.role=lo-step"]}) == []
    ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))


def test_a_shard_docker_restarts_by_itself_gets_its_vip_back_from_the_agent(wire, gorb, group, shard_image, tesson_image,
                                                                             docker_client):
    """The group's VIP agent (GROUP-vip) puts the VIP back on a shard Docker restarted by itself
    (its restart policy after a crash, a docker restart that bypasses tesson) within 5 s, without
    repair; it holds the daemon's socket and nothing else; ps shows it; stop --purge leaves
    nothing of it."""
    ok(tesson_cmd("--gorb", gorb.uri(PARENT), "run", "-g", group, "-n", "2", "--gorb-forward", "dr",
                  "--macvlan-range", RANGE, "-p", "8080", shard_image, env=NO_ENV_GORB))
    want, shards, agent = [f"{PARENT_IP}/32"], [f"{group}-0", f"{group}-1"], f"{group}-vip"
    info = docker_client.inspect_container(agent)
    hc = info["HostConfig"]
    assert info["State"]["Running"] and info["Config"]["Labels"]["io.tesson.role"] == "vip-agent"
    assert info["Config"]["Cmd"][-4:] == ["--group", group, "--vip", PARENT_IP]
    assert hc["NetworkMode"] == "none" and hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd") and not hc.get("Privileged")
    assert "no-new-privileges" in (hc.get("SecurityOpt") or []), hc.get("SecurityOpt")
    assert hc["RestartPolicy"]["Name"] == "unless-stopped" and hc["Binds"] == ["/var/run/docker.sock:/var/run/docker.sock"]
    assert all(not docker_client.inspect_container(n)["HostConfig"].get("CapAdd") for n in shards)
    (doc,) = json.loads(ok(tesson_cmd("ps", "-g", group, "--json", env=NO_ENV_GORB)).stdout)
    assert doc["frontend"]["macvlan"]["agent"] == {"container": agent, "state": "running"}
    assert f"VIP agent {agent} running" in ok(tesson_cmd("ps", "-g", group, env=NO_ENV_GORB)).stdout
    # a crash: Docker's restart policy starts the shard again in a new namespace; the agent puts the
    # VIP back (three times, to see the spread)
    took = []
    for _ in range(3):
        old = docker_client.inspect_container(shards[1])
        os.kill(old["State"]["Pid"], 9)
        wait_restarted(docker_client, shards[1], old["State"]["Pid"])
        took.append(vip_back_after(docker_client, shards[1], want))
    # docker restart, bypassing tesson
    docker_client.restart(shards[0], timeout=1)
    took.append(vip_back_after(docker_client, shards[0], want))
    print(f"VIP back after Docker's own restart: {', '.join(f'{t:.2f}' for t in took)} s")
    assert docker_client.inspect_container(shards[1])["RestartCount"] >= 3
    for _ in range(100):  # the agent says so once its step container is removed, a moment after the VIP is there
        logs = docker_client.logs(agent).decode()
        if logs.count("put the service address back") >= 4:
            break
        time.sleep(0.05)
    assert logs.count("put the service address back") == 4, logs
    # ...and no step container is left behind; the shards are still Gorb's dr backends
    assert docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}", "io.tesson.role=lo-step"]}) == []
    assert dr_backends(gorb, group) == {f"{n}-8080-tcp": (macvlan_ip(docker_client, n), 8080, "dr") for n in shards}
    # without its agent the group is degraded, and repair makes the agent again
    docker_client.stop(agent, timeout=1)
    (doc,) = json.loads(ok(tesson_cmd("ps", "-g", group, "--json", env=NO_ENV_GORB)).stdout)
    assert doc["status"] == "degraded 2/2 (VIP agent not running)" and doc["frontend"]["macvlan"]["agent"]["state"] == "exited"
    r = ok(tesson_cmd("repair", group, env=NO_ENV_GORB))
    assert f"recreated VIP agent {agent} (it was exited)" in r.stdout, r.stdout
    assert docker_client.inspect_container(agent)["State"]["Running"]
    assert ok(tesson_cmd("repair", group, env=NO_ENV_GORB)).stdout.count("VIP agent") == 0  # a running agent stays
    # stop: the agent stops with the shards; start brings it back with them
    ok(tesson_cmd("stop", "-g", group, "-t", "1", env=NO_ENV_GORB))
    assert not docker_client.inspect_container(agent)["State"]["Running"]
    r = ok(tesson_cmd("start", group, env=NO_ENV_GORB))
    assert f"recreated VIP agent {agent}" in r.stdout and docker_client.inspect_container(agent)["State"]["Running"]
    assert all(lo_vips(docker_client, n) == want for n in shards)
    # stop --purge: nothing of the mechanism is left (agent, steps, the macvlan network)
    ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))
    assert docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]}) == []
    assert docker_client.networks(names=[f"tesson-macvlan-{PARENT}"]) == []


def test_two_loopback_steps_at_once_in_one_namespace_both_succeed(wire):
    """tesson's step and the agent's may run at once after a start of tesson's own: the script
    forgives the loser of the race (ip addr add: File exists) and adds each address once."""
    from tesson.frontend.macvlan import loopback_script

    ns = "t16drrace"
    sh("ip", "netns", "del", ns, check=False)
    sh("ip", "netns", "add", ns)
    try:
        script = loopback_script([PARENT_IP, "198.18.1.1"])
        procs = [subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c", script], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True) for _ in range(8)]
        outs = [(p.communicate(timeout=30)[0], p.returncode) for p in procs]
        assert [code for _, code in outs] == [0] * 8
        said = "".join(out for out, _ in outs).split("\n")
        assert sorted(w for w in said if w) == [f"added {PARENT_IP}", "added 198.18.1.1"]
        addrs = sh("ip", "netns", "exec", ns, "ip", "-4", "-o", "addr", "show", "dev", "lo").stdout
        assert addrs.count(f"{PARENT_IP}/32") == 1 and addrs.count("198.18.1.1/32") == 1
    finally:
        sh("ip", "netns", "del", ns, check=False)


@pytest.mark.parametrize("args, says", [
    (["--gorb-forward", "dr", "--macvlan-range", RANGE], "needs --gorb"),
    (["--macvlan-range", RANGE], "--macvlan-range needs --gorb"),
    (["GORB", "nosuchdev0", "--gorb-forward", "dr", "--macvlan-range", RANGE], "nosuchdev0"),
    (["GORB", "t16nov4", "--gorb-forward", "dr", "--macvlan-range", RANGE], "no IPv4"),
    (["GORB", PARENT, "--gorb-forward", "dr", "--macvlan-range", "198.19.0.0/26"], "outside"),
    (["GORB", PARENT, "--gorb-forward", "dr"], "needs --macvlan-range"),
    (["GORB", PARENT, "--gorb-forward", "dr", "--macvlan-range", RANGE, "-p", "8081:8080"], "cannot map ports"),
    (["GORB", PARENT, "--gorb-forward", "tunnel"], "not supported yet: IPVS sends IPIP packets to each shard's own address"),
])
def test_what_dr_cannot_do_is_refused_and_makes_nothing(wire, gorb, group, shard_image, docker_client, args, says):
    sh("ip", "link", "add", "t16nov4", "type", "veth", "peer", "name", "t16nov4p", check=False)
    pre = []
    if args[:1] == ["GORB"]:
        pre, args = ["--gorb", gorb.uri(args[1])], args[2:]
    ports = [] if "-p" in args else ["-p", "8080"]
    r = tesson_cmd(*pre, "run", "-g", group, "-n", "1", *ports, *args, shard_image, env=NO_ENV_GORB)
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert says in line, line
    assert docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]}) == []
    assert docker_client.networks(names=[f"tesson-macvlan-{PARENT}"]) == []
    assert gorb.state()["services"] == {}


# --- issue 13's leftover: run --near NETDEV with a Gorb URI that names no device of its own -------


def test_a_gorb_uri_without_device_registers_on_the_near_network_device(wire, gorb, group, shard_image, docker_client):
    bare = gorb.uri(PARENT).split("://", 1)[1]  # 127.0.0.1:PORT
    r = tesson_cmd("--gorb", bare, "run", "-g", group, "-n", "1", "-p", "8080", "--near", PARENT, shard_image,
                   env=NO_ENV_GORB)
    ok(r)
    vs = f"{group}-8080-tcp"
    rs = gorb.call("GET", f"/service/{vs}/{group}-0-8080-tcp")[1]["options"]
    assert rs["host"] == PARENT_IP  # the --near device's address
    labels = docker_client.inspect_container(f"{group}-0")["Config"]["Labels"]
    assert labels["io.tesson.gorb.uri"] == f"{PARENT}://{bare}" and json.loads(labels["io.tesson.near"]) == [PARENT]
    ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))
    # a URI that names its own device keeps it, --near or not
    ok(tesson_cmd("--gorb", f"lo://{bare}", "run", "-g", group, "-n", "1", "-p", "8080", "--near", PARENT,
                  shard_image, env=NO_ENV_GORB))
    assert gorb.call("GET", f"/service/{vs}/{group}-0-8080-tcp")[1]["options"]["host"] == "127.0.0.1"
    ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))
    # no device in the URI and no --near network device: exit 2, nothing made
    r = tesson_cmd("--gorb", bare, "run", "-g", group, "-n", "1", "-p", "8080", shard_image, env=NO_ENV_GORB)
    assert r.returncode == 2 and "no run --near network device" in r.stderr
    assert docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]}) == []
