"""``--lb kernel`` on the real daemon and the real kernel: traffic from a test-made client namespace
and on loopback, a killed shard out of rotation, stop, repair, purge, and bad input leaving nothing.

The kernel's own table (``nft -j list table ip tesson-GROUP``) is the truth. Groups are named
``t11-...`` and use host ports 28300-28399; the client namespace is ``kt11-client`` with
198.18.0.1/30 (this machine's end) and 198.18.0.2/30. Whatever a test leaves is removed by label,
and the group's rules by ``tesson stop --purge`` (asserted) or, failing that, by name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tesson.frontend import kernel_rules as K
from tests import netlab
from tests.conftest import ROOT, require, tesson_cmd

pytestmark = pytest.mark.docker

HOST_IF = "kt11h0"


@pytest.fixture(scope="session")
def kernel_image(docker_client):
    """The tesson image with this code: TESSON_TEST_IMAGE as given, else scripts/build-image under
    a tag of its own (other sessions rebuild tesson:latest from their own trees)."""
    given = os.environ.get("TESSON_TEST_IMAGE")
    if given:
        return given
    r = subprocess.run([str(ROOT / "scripts" / "build-image"), "--tag", "tesson-kernel:test"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    if r.returncode != 0:
        pytest.fail(f"scripts/build-image failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def client_ns():
    require(os.geteuid() == 0 and shutil.which("nft") and shutil.which("ip"), "needs root, nft and ip")
    lab = netlab.Lab("kt11")
    try:
        ns = netlab.client_pair(lab, HOST_IF)
        yield ns
    finally:
        lab.close()


def _purge_rules(group: str) -> None:
    subprocess.run(["nft", "delete", "table", "ip", K.table_name(group)], capture_output=True)
    chain = nft_json("chain", "ip", "filter", "DOCKER-USER")
    for h in K.handles(group, chain or {}):
        subprocess.run(["nft", "delete", "rule", "ip", "filter", "DOCKER-USER", "handle", str(h)], capture_output=True)


def _cleanup(client, group: str) -> None:
    for c in client.containers(all=True, filters={"label": f"io.tesson.group={group}"}):
        client.remove_container(c["Id"], force=True, v=True)
    for c in client.containers(all=True, filters={"label": f"io.tesson.kernel-oneoff={group}"}):
        client.remove_container(c["Id"], force=True, v=True)
    for n in client.networks(filters={"label": f"io.tesson.group={group}"}):
        client.remove_network(n["Id"])
    _purge_rules(group)


@pytest.fixture
def group(request, docker_client):
    name = "t11-" + request.node.name.split("[")[0].replace("test_", "").replace("_", "-")[:40]
    _cleanup(docker_client, name)
    yield name
    _cleanup(docker_client, name)


def nft_json(*what: str) -> dict | None:
    r = subprocess.run(["nft", "-j", "list", *what], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def table(group: str) -> dict | None:
    listing = nft_json("table", "ip", K.table_name(group))
    return K.read(listing) if listing else None


def docker_user_rules(group: str) -> list[str]:
    r = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True)
    return [ln for ln in r.stdout.splitlines() if K.comment(group) + " " in ln + " "]


def run(*args: str):
    return tesson_cmd("run", *args)


def run_ok(*args: str) -> None:
    r = run(*args)
    assert r.returncode == 0, f"tesson run {' '.join(args)} failed: {r.stderr}"


def ps_json(group: str) -> dict:
    r = tesson_cmd("ps", "-g", group, "--json")
    assert r.returncode == 0, r.stderr
    (doc,) = json.loads(r.stdout)
    return doc


def address(client, name: str, group: str) -> str:
    return client.inspect_container(name)["NetworkSettings"]["Networks"][f"tesson-{group}"]["IPAddress"]


GET = r"""
import sys, urllib.request
host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(n):
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/cgi-bin/id", timeout=3) as r:
            text = r.read().decode()
        print(dict(l.split("=", 1) for l in text.splitlines() if "=" in l).get("uid", "?"))
    except OSError as e:
        print("fail")
"""


def uids(ns: str | None, host: str, port: int, n: int) -> list[str]:
    """``n`` requests (each a new connection) from namespace ``ns`` (None: this one): the uid of the
    shard that answered each, or "fail"."""
    r = netlab.in_ns(ns, [sys.executable, "-c", GET, host, str(port), str(n)], timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def leftovers(client, group: str):
    cs = [c["Names"][0] for c in client.containers(all=True, filters={"label": f"io.tesson.group={group}"})]
    cs += [c["Names"][0] for c in client.containers(all=True, filters={"label": f"io.tesson.kernel-oneoff={group}"})]
    ns = [n["Name"] for n in client.networks(names=[f"tesson-{group}"]) if n["Name"] == f"tesson-{group}"]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return cs, ns, K.table_name(group) in tables.split(), docker_user_rules(group)


def test_kernel_door_end_to_end(group, docker_client, shard_image, kernel_image, client_ns):
    port = 28301
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "--lb", "kernel", "--lb-image", kernel_image, shard_image)
    a0, a1 = address(docker_client, f"{group}-0", group), address(docker_client, f"{group}-1", group)

    # the kernel has the group's table: one door, both shards, the loopback guard
    t = table(group)
    assert t["doors"] == [K.Door("tcp", port, 8080)] and t["backends"] == [a0, a1] and t["martians"]
    # Docker's FORWARD would drop outside clients: exactly one accept per shard address and port
    rules = docker_user_rules(group)
    assert len(rules) == 2 and all("--dport 8080" in r and "-j ACCEPT" in r for r in rules)
    assert {a0, a1} == {r.split("-d ")[1].split("/")[0] for r in rules}

    # the agent: host network, only NET_ADMIN, restart unless-stopped, role lb
    lb = docker_client.inspect_container(f"{group}-lb")
    assert lb["HostConfig"]["NetworkMode"] == "host"
    assert lb["HostConfig"]["CapAdd"] == ["NET_ADMIN"] and lb["HostConfig"]["CapDrop"] == ["ALL"]
    assert lb["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert lb["Config"]["Labels"]["io.tesson.role"] == "lb" and lb["Config"]["Labels"]["io.tesson.frontend"] == "kernel"

    # traffic: every shard, round robin, from the client namespace and on loopback
    outside = uids(client_ns, "198.18.0.1", port, 6)
    assert sorted(outside) == ["0"] * 3 + ["1"] * 3, outside
    local = uids(None, "127.0.0.1", port, 6)
    assert sorted(local) == ["0"] * 3 + ["1"] * 3, local

    # route_localnet: on for the group's bridge only, never for all
    net = docker_client.inspect_network(f"tesson-{group}")
    bridge = "br-" + net["Id"][:12]
    assert open(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read().strip() == "1"
    assert open("/proc/sys/net/ipv4/conf/all/route_localnet").read().strip() == "0"
    assert open(f"/proc/sys/net/ipv4/conf/{HOST_IF}/route_localnet").read().strip() == "0"

    # a packet for 127.0.0.1 from outside is not answered (the same packet for the host's address is)
    mac = netlab.mac_of(HOST_IF)
    assert netlab.probe_syn(client_ns, "eth0", mac, "198.18.0.2", "198.18.0.1", port) == "synack"
    assert netlab.probe_syn(client_ns, "eth0", mac, "198.18.0.2", "127.0.0.1", port) == "no"

    # ps
    fe = ps_json(group)["frontend"]
    assert fe["kind"] == "kernel" and fe["status"] == "running, 2/2 shards in rotation", fe
    assert fe["ports"] == [f"0.0.0.0:{port}->8080/tcp"] and fe["in_rotation"] == [f"{group}-0", f"{group}-1"]
    r = tesson_cmd("ps", "-g", group)
    assert f"Frontend: kernel (running, 2/2 shards in rotation) 0.0.0.0:{port}->8080/tcp" in r.stdout

    # a killed shard is out of rotation within half a second
    docker_client.kill(f"{group}-1")
    killed = time.monotonic()
    while table(group)["backends"] != [a0]:
        assert time.monotonic() - killed < 5, table(group)
        time.sleep(0.01)
    took = time.monotonic() - killed
    assert took < 0.5, f"out of rotation after {took:.3f}s"
    assert len(docker_user_rules(group)) == 1
    assert uids(client_ns, "198.18.0.1", port, 4) == ["0"] * 4
    assert ps_json(group)["frontend"]["status"] == "running, 1/2 shards in rotation"

    # it comes back in when it starts again (repair restarts it)
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while len(table(group)["backends"]) != 2:
        assert time.monotonic() < deadline, table(group)
        time.sleep(0.05)
    assert sorted(uids(client_ns, "198.18.0.1", port, 4)) == ["0", "0", "1", "1"]

    # the table removed behind tesson's back: repair writes it again
    subprocess.run(["nft", "delete", "table", "ip", K.table_name(group)], check=True)
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "rewrote table" in r.stdout and len(table(group)["backends"]) == 2

    # stop: shards out of rotation (the table stays, with no door), agent stopped
    r = tesson_cmd("stop", "-g", group, "-t", "1")
    assert r.returncode == 0, r.stderr
    t = table(group)
    assert t["backends"] == [] and t["doors"] == [] and t["martians"]
    assert docker_user_rules(group) == []
    assert ps_json(group)["frontend"]["status"].startswith("agent exited")

    # purge: no table, no rule, no container, no network
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])


def agent_sync(client, group: str, *extra: str) -> dict:
    """``tesson kernel-agent sync`` exec'd in the running agent, as scale and update do."""
    ex = client.exec_create(f"{group}-lb", ["tesson", "kernel-agent", "sync", "--group", group, *extra])
    out = client.exec_start(ex)
    assert client.exec_inspect(ex["Id"])["ExitCode"] == 0, out
    return json.loads(out)


def wait_table(group: str, want: list[str], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (table(group) or {}).get("backends") != want:
        assert time.monotonic() < deadline, (table(group), want)
        time.sleep(0.05)


def test_a_held_shard_stays_out_through_events_and_an_agent_restart_until_repair(group, docker_client, shard_image,
                                                                              kernel_image):
    port = 28340
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"127.0.0.1:{port}:8080", "--lb", "kernel", "--lb-image", kernel_image,
           shard_image)
    a0, a1 = address(docker_client, f"{group}-0", group), address(docker_client, f"{group}-1", group)
    wrote = agent_sync(docker_client, group, "--out", "1")
    assert wrote["names"] == [f"{group}-0"] and wrote["held"] == [1]
    assert table(group)["backends"] == [a0]  # in the kernel when the exec returns
    # events of the other shard: the agent rewrites the table, still without shard 1
    docker_client.stop(f"{group}-0", timeout=1)
    wait_table(group, [])
    docker_client.start(f"{group}-0")
    a0 = address(docker_client, f"{group}-0", group)
    wait_table(group, [a0])
    # shard 1's own stop and start (an update's successor under the same index): still out
    docker_client.stop(f"{group}-1", timeout=1)
    docker_client.start(f"{group}-1")
    time.sleep(2.0)  # the agent's look again after an event (0.3 s, 1.5 s)
    assert table(group)["backends"] == [a0]
    # the agent restarted (Docker's restart policy, a daemon restart): the hold outlives it
    docker_client.restart(f"{group}-lb", timeout=2)
    time.sleep(2.0)
    assert table(group)["backends"] == [a0]
    fe = ps_json(group)["frontend"]
    assert fe["held_out"] == [f"{group}-1"] and f"{group}-1 held out" in fe["status"], fe
    assert uids(None, "127.0.0.1", port, 3) == ["0"] * 3
    # repair lets go of the holds a change cut short left
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    a1 = address(docker_client, f"{group}-1", group)
    assert table(group)["backends"] == [a0, a1] and ps_json(group)["frontend"]["held_out"] == []
    assert sorted(uids(None, "127.0.0.1", port, 4)) == ["0", "0", "1", "1"]
    # bad input to the verb: one line, exit 1, nothing changed
    ex = docker_client.exec_create(f"{group}-lb", ["tesson", "kernel-agent", "sync", "--group", group, "--out", "x"])
    out = docker_client.exec_start(ex).decode()
    assert docker_client.exec_inspect(ex["Id"])["ExitCode"] == 1 and "expected shard indexes" in out, out
    assert table(group)["backends"] == [a0, a1]


def test_purge_after_the_agent_was_removed_by_hand_and_twice(group, docker_client, shard_image, kernel_image):
    port = 28305
    run_ok("-g", group, "-u", "pu", "-n", "1", "-p", f"{port}:8080", "--lb", "kernel", "--lb-image", kernel_image, shard_image)
    assert table(group)["backends"]
    docker_client.remove_container(f"{group}-lb", force=True)
    # the rules stay in force without their writer
    assert uids(None, "127.0.0.1", port, 2) == ["0", "0"]
    assert ps_json(group)["frontend"]["status"].startswith("agent missing")
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 1 and "no group named" in r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])


def test_purge_of_a_group_whose_containers_were_all_removed_by_hand(group, docker_client, shard_image, kernel_image):
    """Its table and DOCKER-USER accepts outlive the containers: stop --purge still finds and removes
    them (a one-off of the tesson image on the daemon's host), and says so."""
    port = 28309
    run_ok("-g", group, "-u", "pu", "-n", "1", "-p", f"{port}:8080", "--lb", "kernel", "--lb-image", kernel_image, shard_image)
    assert table(group)["backends"] and docker_user_rules(group)
    for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"}):
        docker_client.remove_container(c["Id"], force=True, v=True)
    assert table(group) is not None  # the kernel still has it
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env={"TESSON_IMAGE": kernel_image})
    assert r.returncode == 0, r.stderr
    assert f"nft table {K.table_name(group)}" in r.stdout and "1 DOCKER-USER rule" in r.stdout, r.stdout
    assert f"network tesson-{group}" in r.stdout
    assert leftovers(docker_client, group) == ([], [], False, [])
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env={"TESSON_IMAGE": kernel_image})
    assert r.returncode == 1 and "no group named" in r.stderr, r.stderr


def test_repair_recreates_a_missing_agent(group, docker_client, shard_image, kernel_image):
    port = 28307
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "-p", f"127.0.0.1:{port + 1}:8080",
           "--lb", "kernel", "--lb-image", kernel_image, shard_image)
    docker_client.remove_container(f"{group}-lb", force=True)
    docker_client.remove_container(f"{group}-0", force=True)
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "recreated kernel agent" in r.stdout and "2 shards in rotation" in r.stdout
    t = table(group)
    assert t["backends"] == [address(docker_client, f"{group}-{i}", group) for i in (0, 1)]
    assert t["doors"] == [K.Door("tcp", port, 8080), K.Door("tcp", port + 1, 8080, "127.0.0.1")]
    assert sorted(uids(None, "127.0.0.1", port + 1, 4)) == ["0", "0", "1", "1"]
    # the loopback-only door takes no DOCKER-USER accept of its own
    assert len(docker_user_rules(group)) == 2
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])


def test_a_port_held_by_a_process_or_another_group_fails_leaving_nothing(group, docker_client, shard_image, kernel_image):
    port = 28310
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("0.0.0.0", port))
    holder.listen(1)
    try:
        r = run("-g", group, "-u", "pu", "-n", "1", "-p", f"{port}:8080", "--lb", "kernel", "--lb-image", kernel_image, shard_image)
    finally:
        holder.close()
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{port}" in r.stderr and "in use" in r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])

    other = group + "-other"
    _cleanup(docker_client, other)
    try:
        run_ok("-g", other, "-u", "pu", "-n", "1", "-p", f"{port + 1}:8080", "--lb", "kernel", "--lb-image", kernel_image, shard_image)
        r = run("-g", group, "-u", "pu", "-n", "1", "-p", f"{port + 1}:8080", "--lb", "kernel", "--lb-image", kernel_image, shard_image)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"held by tesson group {other}" in r.stderr
        assert leftovers(docker_client, group) == ([], [], False, [])
        assert table(other)["backends"]  # the other group is untouched
    finally:
        tesson_cmd("stop", "-g", other, "--purge", "-t", "1")
        _cleanup(docker_client, other)


@pytest.mark.parametrize("args, needle", [
    (("-p", "8080"), "needs one fixed host port"),
    (("-p", "28320-28322:8080"), "needs one fixed host port"),
    (("-p", "28320:8080/sctp"), "tcp and udp, not sctp"),
    (("-p", "[::1]:28320:8080"), "IPv4 only"),
    (("-p", "28320:8080", "--lb-method", "random"), "--lb-method is the nginx balancer's"),
    ((), "needs at least one -p"),
])
def test_bad_options_are_one_line_and_exit_2(args, needle, shard_image):
    r = run("-g", "t11-bad", "-u", "pu", "-n", "1", "--lb", "kernel", *args, shard_image)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- --lb auto, the default ------------------------------------------------------------------------

def _request(*argv: str):
    """run's typed request for these options (the plan is made on this machine: --dry-run's path)."""
    from tesson import cli
    from tesson.commands import run as run_cmd

    return run_cmd.run_request(cli.parse(["run", *argv, "img"]))


def test_auto_is_the_default_and_says_which_door_it_chose(group, docker_client, shard_image, kernel_image):
    port = 28330
    r = run("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "--lb-image", kernel_image, shard_image)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("front door:") == 1 and "tesson: front door: kernel (nftables DNAT" in r.stderr
    assert ps_json(group)["frontend"]["kind"] == "kernel"
    assert sorted(uids(None, "127.0.0.1", port, 4)) == ["0", "0", "1", "1"]
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])


@pytest.mark.parametrize("argv, why", [
    (("-p", "8080"), "needs one fixed host port"),
    (("-p", "28331:8080", "--lb-method", "random"), "--lb-method is the nginx balancer's"),
    (("-p", "28331:8080/sctp"), "tcp and udp"),
])
def test_auto_chooses_nginx_for_what_the_kernel_door_cannot_do(argv, why, capsys):
    from tesson.frontend import kernel_auto

    assert kernel_auto.choose(_request(*argv)) == "nginx"
    err = capsys.readouterr().err
    assert err.startswith("tesson: front door: nginx (") and why in err and err.count("\n") == 1


def test_auto_chooses_nginx_where_the_daemon_host_cannot(shard_image, capsys, docker_client):
    """The probe runs in the image: one without tesson (here the test shard) cannot program nftables."""
    from tesson.frontend import kernel_auto

    assert kernel_auto.choose(_request("-p", "28332:8080", "--lb-image", shard_image)) == "nginx"
    err = capsys.readouterr().err
    assert err.startswith("tesson: front door: nginx (the kernel door is not possible here: ")
    assert docker_client.containers(all=True, filters={"label": "io.tesson.kernel-oneoff=probe"}) == []


def test_auto_probe_passes_on_this_host(kernel_image, capsys):
    from tesson.frontend import kernel_auto

    assert kernel_auto.probe(kernel_image) is None
    assert kernel_auto.choose(_request("-p", "28333:8080", "--lb-image", kernel_image)) == "kernel"


def test_an_unhealthy_shard_leaves_the_rotation_and_comes_back(group, docker_client, shard_image, kernel_image, tmp_path):
    port = 28340
    cfg = tmp_path / "health.json"
    cfg.write_text(json.dumps({"Healthcheck": {"Test": ["CMD", "cat", "/tmp/healthy"], "Interval": 200_000_000,
                                               "Timeout": 1_000_000_000, "Retries": 1}}))
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "--lb", "kernel", "--lb-image", kernel_image,
           "-c", str(cfg), shard_image, "sh", "-c", "echo ok > /tmp/healthy; exec /start")
    a0, a1 = address(docker_client, f"{group}-0", group), address(docker_client, f"{group}-1", group)

    def rotation_becomes(want: list[str], within: float) -> float:
        began = time.monotonic()
        while table(group)["backends"] != want:
            assert time.monotonic() - began < within, (want, table(group))
            time.sleep(0.02)
        return time.monotonic() - began

    rotation_becomes([a0, a1], 10)  # in once Docker calls them healthy
    ex = docker_client.exec_create(f"{group}-0", ["sh", "-c", "rm /tmp/healthy"])["Id"]
    docker_client.exec_start(ex)
    rotation_becomes([a1], 5)
    assert uids(None, "127.0.0.1", port, 3) == ["1"] * 3
    ex = docker_client.exec_create(f"{group}-0", ["sh", "-c", "echo ok > /tmp/healthy"])["Id"]
    docker_client.exec_start(ex)
    rotation_becomes([a0, a1], 5)
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])


def test_a_port_a_leftover_table_still_publishes_fails_the_run(group, docker_client, shard_image, kernel_image):
    """A group removed with docker rm -f (not tesson stop --purge) leaves its table: its port is not free."""
    port = 28350
    stale = group + "-gone"
    subprocess.run(["nft", "-j", "-f", "-"], check=True, text=True, input=json.dumps(
        K.render(stale, "br-t11gone", [K.Door("tcp", port, 8080)], [K.Backend("x", "198.19.9.9")], docker_user=False)))
    try:
        r = run("-g", group, "-u", "pu", "-n", "1", "-p", f"{port}:8080", "--lb", "kernel", "--lb-image", kernel_image, shard_image)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"still published by the kernel table tesson-{stale}" in r.stderr
        assert leftovers(docker_client, group) == ([], [], False, [])
        assert table(stale)["backends"] == ["198.19.9.9"]  # not ours to remove
    finally:
        _purge_rules(stale)
