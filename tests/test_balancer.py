"""The embedded nginx balancer on a real daemon: traffic, UDP, a killed shard, repair, stop, bad input.

Every group here is named ``t4-...`` and uses host ports 28100-28199; whatever a test leaves is
removed by label at its end.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tesson import cpulist
from tests.conftest import http_get, parse_shard_answer, remove_group, tesson_cmd

pytestmark = pytest.mark.docker

LB_LABEL = "io.tesson.role=lb"


@pytest.fixture(scope="session")
def lb_image(tesson_image):
    """The balancer's image: the tesson image itself (it carries Debian's nginx + stream module), built
    the CI way once per session, so the balancer is tested as users get it."""
    return tesson_image


def _cleanup(client, group: str) -> None:
    remove_group(client, group)


@pytest.fixture
def group(request, docker_client):
    """A fresh group name for this test, cleaned up (by label) before and after."""
    name = "t4-" + request.node.name.split("[")[0].replace("test_", "").replace("_", "-")[:40]
    _cleanup(docker_client, name)
    yield name
    _cleanup(docker_client, name)


def leftovers(client, group: str) -> tuple[list, list]:
    cs = client.containers(all=True, filters={"label": f"io.tesson.group={group}"})
    ns = client.networks(filters={"label": f"io.tesson.group={group}"})
    ns += [n for n in client.networks(names=[f"tesson-{group}"]) if n["Name"] == f"tesson-{group}"]
    return [c["Names"][0] for c in cs], [n["Name"] for n in ns]


def ps_json(group: str) -> dict:
    r = tesson_cmd("ps", "-g", group, "--json")
    assert r.returncode == 0, r.stderr
    (doc,) = json.loads(r.stdout)
    return doc


def run_ok(*args: str) -> None:
    r = tesson_cmd("run", "--lb", "nginx", *args)  # --lb auto (the default) would choose the kernel door
    assert r.returncode == 0, f"tesson run {' '.join(args)} failed: {r.stderr}"


def collect(port: int, count: int, host: str = "127.0.0.1") -> list[dict]:
    """``count`` requests through the front door, each on a new connection; no retry after a
    failure once the first answer came (http_get only retries while the door is not open yet)."""
    import urllib.request

    answers = [parse_shard_answer(http_get(host, port))]
    for _ in range(count - 1):
        with urllib.request.urlopen(f"http://{host}:{port}/cgi-bin/id", timeout=10) as r:
            answers.append(parse_shard_answer(r.read().decode()))
    return answers


def assert_every_shard_answers_on_its_cpus(answers: list[dict], plan: dict[int, list[int]]) -> None:
    seen = {}
    for a in answers:
        uid = int(a["uid"])
        assert uid in plan, a
        assert cpulist.parse(a["Cpus_allowed_list"]) == plan[uid], f"shard {uid} runs on {a['Cpus_allowed_list']}"
        seen[uid] = a["hostname"]
    assert sorted(seen) == sorted(plan), f"shards seen: {sorted(seen)}, planned: {sorted(plan)}"
    assert len(set(seen.values())) == len(plan)  # distinct containers


def test_traffic_through_the_front_door_reaches_every_shard(group, docker_client, shard_image, lb_image):
    n = 2
    run_ok("-g", group, "-u", "pu", "-n", str(n), "-p", "28101:8080", "-p", "127.0.0.1::8080",
           "--lb-image", lb_image, "--lb-cpus", "1", shard_image)
    doc = ps_json(group)
    plan = {s["index"]: s["cpus"] for s in doc["shards"]}
    assert len(plan) == n

    # the front door: published as docker run -p would, the ephemeral one included
    fe = doc["frontend"]
    assert fe["kind"] == "nginx" and fe["container"] == f"{group}-lb" and fe["status"] == "running"
    assert "0.0.0.0:28101->8080/tcp" in fe["ports"], fe  # as docker ps: host address -> container port
    ephemeral = [p for p in fe["ports"] if p.startswith("127.0.0.1:")]
    assert len(ephemeral) == 1 and ephemeral[0].endswith("->8080/tcp"), fe
    eph_port = int(ephemeral[0].split(":")[1].split("->")[0])
    assert eph_port != 28101

    answers = collect(28101, 4 * n)
    assert_every_shard_answers_on_its_cpus(answers, plan)
    assert_every_shard_answers_on_its_cpus(collect(eph_port, 4 * n), plan)

    # the balancer: labelled, pinned as asked, on the group network; the shards publish nothing
    lb = docker_client.inspect_container(f"{group}-lb")
    assert lb["Config"]["Labels"]["io.tesson.group"] == group
    assert lb["Config"]["Labels"]["io.tesson.role"] == "lb"
    assert lb["HostConfig"]["CpusetCpus"] == "1"
    ex = docker_client.exec_create(lb["Id"], ["grep", "Cpus_allowed_list", "/proc/1/status"])["Id"]
    assert docker_client.exec_start(ex).decode().split()[-1] == "1"
    net = docker_client.inspect_network(f"tesson-{group}")
    assert net["Labels"]["io.tesson.group"] == group
    for i in range(n):
        shard = docker_client.inspect_container(f"{group}-{i}")
        assert list(shard["NetworkSettings"]["Networks"]) == [f"tesson-{group}"]
        assert not any(shard["NetworkSettings"]["Ports"].values()), shard["NetworkSettings"]["Ports"]
        assert not shard["HostConfig"]["PortBindings"]

    # ps, as a table: the front door and the balancer's state
    r = tesson_cmd("ps", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "nginx" in r.stdout and "running" in r.stdout and "0.0.0.0:28101->8080/tcp" in r.stdout

    # stop takes the balancer down with the shards; --purge leaves nothing at all
    r = tesson_cmd("stop", "-g", group, "-t", "2")
    assert r.returncode == 0, r.stderr
    assert docker_client.inspect_container(f"{group}-lb")["State"]["Running"] is False
    assert ps_json(group)["frontend"]["status"] == "exited"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 28101), timeout=2).close()
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "2")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_three_shards_on_two_cpus_and_a_stopped_group_repaired(group, docker_client, shard_image, lb_image):
    """More shards than CPUs: each still seen on its own plan; after a plain stop, repair restarts
    the shards and makes a new balancer, and the front door answers again."""
    port = 28105
    run_ok("-g", group, "-u", "pu", "-n", "3", "-p", f"{port}:8080", "--lb-image", lb_image,
           "--lb-method", "round_robin", shard_image)
    plan = {s["index"]: s["cpus"] for s in ps_json(group)["shards"]}
    assert len(plan) == 3
    assert_every_shard_answers_on_its_cpus(collect(port, 12), plan)
    r = tesson_cmd("stop", "-g", group, "-t", "1")
    assert r.returncode == 0, r.stderr
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "recreated balancer" in r.stdout, r.stdout
    lb = docker_client.inspect_container(f"{group}-lb")
    assert lb["Config"]["Labels"]["io.tesson.lb.method"] == "round_robin"
    assert_every_shard_answers_on_its_cpus(collect(port, 12), plan)
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


UDP_ECHO = (
    "import os, socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 9953))\n"
    "while True:\n"
    "    data, peer = s.recvfrom(2048)\n"
    "    s.sendto(os.environ['TESSON_UID'].encode() + b' ' + data, peer)\n"
)


def test_udp_echo_answers_through_the_front_door(group, docker_client, lb_image, tmp_path):
    # the shards run python3 from the balancer's image (tesson:latest's entrypoint is tesson)
    config = tmp_path / "udp-echo.json"
    config.write_text(json.dumps({"Entrypoint": ["python3", "-u", "-c", UDP_ECHO]}))
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", "28110:9953/udp", "--lb-image", lb_image,
           "-c", str(config), lb_image)
    doc = ps_json(group)
    assert "0.0.0.0:28110->9953/udp" in doc["frontend"]["ports"], doc["frontend"]
    seen = set()
    deadline = time.monotonic() + 20
    i = 0
    while time.monotonic() < deadline and (len(seen) < 2 or i < 8):
        i += 1
        payload = f"ping-{i}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a new source port: a new session
            s.settimeout(1.0)
            s.sendto(payload, ("127.0.0.1", 28110))
            try:
                data = s.recv(2048)
            except OSError:  # the shard's socket may not be bound yet right after start
                continue
        uid, _, echoed = data.partition(b" ")
        assert echoed == payload
        seen.add(int(uid))
    assert seen == {0, 1}, f"UDP answers came from shards {sorted(seen)}"
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


def _serves(port: int, uid: int, plan: dict, within: float = 20.0) -> None:
    """Shard ``uid`` answers through the front door again within ``within`` seconds (nginx keeps a
    shard that failed out for its fail_timeout), on its planned CPUs."""
    deadline = time.monotonic() + within
    while True:
        a = parse_shard_answer(http_get("127.0.0.1", port))
        if int(a["uid"]) == uid:
            assert cpulist.parse(a["Cpus_allowed_list"]) == plan[uid]
            return
        assert time.monotonic() < deadline, f"shard {uid} never answered after repair"
        time.sleep(0.2)


def test_a_dead_shard_costs_no_request_and_repair_brings_it_back(group, docker_client, shard_image, lb_image):
    port = 28120
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "--lb-image", lb_image, shard_image)
    plan = {s["index"]: s["cpus"] for s in ps_json(group)["shards"]}
    assert_every_shard_answers_on_its_cpus(collect(port, 8), plan)

    # killed: every request still succeeds, answered by the survivor
    docker_client.kill(f"{group}-1")
    answers = collect(port, 10)
    assert {int(a["uid"]) for a in answers} == {0}
    doc = ps_json(group)
    assert doc["status"].startswith("degraded") and doc["shards"][1]["state"] == "exited"

    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert f"{group}-1" in r.stdout and "balancer" in r.stdout
    _serves(port, 1, plan)

    # removed outright: recreated as a new container (new address); nginx reaches it again
    old_id = docker_client.inspect_container(f"{group}-0")["Id"]
    docker_client.remove_container(f"{group}-0", force=True)
    assert {int(a["uid"]) for a in collect(port, 6)} == {1}
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert docker_client.inspect_container(f"{group}-0")["Id"] != old_id
    _serves(port, 0, plan)

    # the balancer itself removed: repair makes a new one on the same front door
    docker_client.remove_container(f"{group}-lb", force=True)
    assert ps_json(group)["frontend"]["status"] == "missing"
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "recreated balancer" in r.stdout
    assert_every_shard_answers_on_its_cpus(collect(port, 8), plan)

    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_repair_reloads_only_when_shard_addresses_changed(group, docker_client, shard_image, lb_image):
    """A healthy group is left alone; a shard whose address changed behind tesson's back (Docker
    gave its old address to another container) is reached again after repair."""
    port = 28125
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "--lb-image", lb_image, shard_image)
    plan = {s["index"]: s["cpus"] for s in ps_json(group)["shards"]}
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "nothing to repair" in r.stdout and "balancer" not in r.stdout, r.stdout

    net = f"tesson-{group}"

    def address(name):
        return docker_client.inspect_container(name)["NetworkSettings"]["Networks"][net]["IPAddress"]

    old = address(f"{group}-1")
    docker_client.kill(f"{group}-1")
    squatter = docker_client.create_container(shard_image, command=["sleep", "300"], name=f"{group}-squatter",
                                              host_config=docker_client.create_host_config(network_mode=net))
    try:
        docker_client.start(squatter)
        docker_client.start(f"{group}-1")  # Docker restarting it, as its restart policy would
        assert address(f"{group}-1") != old
        assert {int(a["uid"]) for a in collect(port, 6)} == {0}  # nginx still knows the old address
        r = tesson_cmd("repair", "-g", group)
        assert r.returncode == 0, r.stderr
        assert "reloaded balancer" in r.stdout, r.stdout
        _serves(port, 1, plan)
    finally:
        docker_client.remove_container(squatter, force=True)
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_a_burst_of_connections_is_not_turned_into_an_outage(group, docker_client, shard_image, lb_image):
    """More connections at once than the shards' accept queues hold: connects time out and shards
    get marked failed, but the balancer keeps passing connections on (backups), so every request
    is answered; nginx never runs out of upstreams."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    port = 28128
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "--lb-image", lb_image, shard_image)
    http_get("127.0.0.1", port)

    def one(_):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cgi-bin/id", timeout=30) as r:
            return parse_shard_answer(r.read().decode())["uid"]

    with ThreadPoolExecutor(max_workers=96) as pool:
        uids = list(pool.map(one, range(480)))
    assert len(uids) == 480 and set(uids) == {"0", "1"}
    logs = docker_client.logs(f"{group}-lb").decode(errors="replace")
    assert "no live upstreams" not in logs
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr


def test_a_host_port_in_use_fails_cleanly(group, docker_client, shard_image, lb_image):
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("0.0.0.0", 28130))
        held.listen(1)
        r = tesson_cmd("run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "-p", "28131:8080", "-p", "28130:8080",
                       "--lb-image", lb_image, shard_image)
    assert r.returncode == 1
    assert "28130" in r.stderr and "in use" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_a_host_port_the_daemon_refuses_rolls_back_everything(group, docker_client, shard_image, lb_image):
    """A port taken where this process cannot see it (here: by another container's publication that
    tesson's own check does not judge, a host range) still fails the run at the balancer's start,
    and the rollback takes the shards, the balancer and the network."""
    other = group + "-x"
    _cleanup(docker_client, other)
    try:
        run_ok("-g", other, "-u", "pu", "-n", "1", "-p", "28140:8080", "--lb-image", lb_image, shard_image)
        r = tesson_cmd("run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "-p", "28140-28140:8080",
                       "--lb-image", lb_image, shard_image)
        assert r.returncode == 1
        assert "28140" in r.stderr and "balancer" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert leftovers(docker_client, group) == ([], [])
    finally:
        _cleanup(docker_client, other)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--lb-method", "bogus"], ["bogus", "least_conn"]),
        (["--lb-method", "least_conn; include /etc/passwd"], ["unknown balancing method"]),
        (["--lb-cpus", "999"], ["999", "--lb-cpus"]),
        (["--lb-cpus", "x"], ["--lb-cpus"]),
        (["-p", "28150:8080/sctp"], ["sctp"]),
        (["-p", "28150:9090"], ["28150", "published twice"]),
    ],
)
def test_bad_balancer_options_are_usage_errors(group, docker_client, shard_image, flags, words):
    r = tesson_cmd("run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "-p", "28150:8080", *flags, shard_image)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_a_group_name_too_long_for_a_dns_label_still_gets_a_balancer(docker_client, shard_image, lb_image):
    """The balancer reaches shards by address, not by name: "NAME-0" of 64 characters (more than
    one DNS label holds) is no obstacle."""
    name = "t4-" + "x" * 59
    _cleanup(docker_client, name)
    try:
        run_ok("-g", name, "-u", "pu", "-n", "1", "-p", "28165:8080", "--lb-image", lb_image, shard_image)
        assert parse_shard_answer(http_get("127.0.0.1", 28165))["group"] == name
    finally:
        _cleanup(docker_client, name)


def test_lb_nginx_without_ports_is_a_usage_error(group, docker_client, shard_image):
    r = tesson_cmd("run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "--lb", "nginx", shard_image)
    assert r.returncode == 2, r.stderr
    assert "--lb nginx needs at least one -p" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_a_missing_balancer_image_fails_before_any_shard(group, docker_client, shard_image):
    r = tesson_cmd("run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "-p", "28160:8080",
                   "--lb-image", "t4-no-such-image:1", shard_image)
    assert r.returncode == 1
    assert "t4-no-such-image:1" in r.stderr
    assert leftovers(docker_client, group) == ([], [])


def _address(client, name: str, net: str) -> str:
    return client.inspect_container(name)["NetworkSettings"]["Networks"][net]["IPAddress"]


def test_the_balancer_restarts_while_a_shard_is_down(group, docker_client, shard_image, lb_image):
    """A balancer that (re)starts while a shard is down keeps answering from the
    others (nginx needs no name to resolve), and never proxies to itself although Docker gives it the
    stopped shard's freed address; once the shard is back on another address, ps says the balancer
    is stale and repair reloads it."""
    port, net = 28170, f"tesson-{group}"
    # a host range of one port keeps the balancer on the group's bridge network (a fixed port would
    # put it in the host's network, where it has no address of its own to be confused with a shard's)
    run_ok("-g", group, "-u", "pu", "-n", "3", "-p", f"{port}-{port}:8080", "--lb-image", lb_image, shard_image)
    plan = {s["index"]: s["cpus"] for s in ps_json(group)["shards"]}
    assert_every_shard_answers_on_its_cpus(collect(port, 12), plan)

    old2 = _address(docker_client, f"{group}-2", net)
    docker_client.stop(f"{group}-2", timeout=1)
    docker_client.restart(f"{group}-lb", timeout=2)
    answers = collect(port, 12)
    assert {int(a["uid"]) for a in answers} == {0, 1}
    lb = docker_client.inspect_container(f"{group}-lb")
    assert lb["State"]["Running"] and not lb["State"]["Restarting"] and lb["RestartCount"] == 0, lb["State"]
    fe = ps_json(group)["frontend"]
    assert fe["status"] == "running", fe

    # The hazard this test is about. Docker's default IPAM hands out the lowest free address of a
    # network (no fixed subnet or --ip is possible here: tesson's network has no user subnet), so
    # the restarted balancer holds the stopped shard's address. A daemon that allocated otherwise
    # would not exercise the self-address marking at all: fail loudly rather than pass vacuously.
    lb_ip = _address(docker_client, f"{group}-lb", net)
    assert lb_ip == old2, (f"precondition: the restarted balancer should hold stopped {group}-2's address {old2} "
                           f"(Docker's lowest-free allocation), it got {lb_ip}: this daemon allocates differently")
    # its live config lists that address (primary and backup) and marks every such server down
    ex = docker_client.exec_create(lb["Id"], ["cat", "/tmp/tesson-nginx.conf"])["Id"]
    live = docker_client.exec_start(ex).decode()
    at_self = [ln.strip() for ln in live.splitlines() if ln.strip().startswith(f"server {lb_ip}:")]
    assert len(at_self) == 2 and all(ln.endswith(" down;") for ln in at_self), live
    others = [ln.strip() for ln in live.splitlines() if ln.strip().startswith("server ") and ":8080 " in ln
              and not ln.strip().startswith(f"server {lb_ip}:")]
    assert len(others) == 4 and not any(ln.endswith(" down;") for ln in others), live

    # the shard comes back on another address (its old one is the balancer's): ps says stale
    docker_client.start(f"{group}-2")
    new2 = _address(docker_client, f"{group}-2", net)
    assert new2 != old2, f"{group}-2 came back on {new2}, the balancer's address"
    fe = ps_json(group)["frontend"]
    assert fe["status"].startswith("running, stale: run tesson repair") and fe["stale"] == [f"{group}-2"], fe
    table = tesson_cmd("ps", "-g", group)
    assert "stale: run tesson repair" in table.stdout, table.stdout
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "reloaded balancer" in r.stdout, r.stdout
    fe = ps_json(group)["frontend"]
    assert fe["status"] == "running" and fe["stale"] == [], fe
    _serves(port, 2, plan)
    assert docker_client.inspect_container(f"{group}-lb")["RestartCount"] == 0
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_a_run_that_loses_the_group_name_keeps_the_winners_network(group, docker_client, shard_image, lb_image,
                                                                   monkeypatch):
    """Two runs of one group, the losing interleaving made deterministic: this run makes the network,
    then another run of the group claims GROUP-0 (created on that network, not started yet) before
    this one does. This run fails on the name; its rollback must not take the network from the
    winner, whose shard then starts on it."""
    from tesson import cli, frontend
    from tesson.commands import run as run_cmd
    from tesson.errors import TessonError
    from tesson.frontend import nginx

    net = f"tesson-{group}"

    class Raced(nginx.NginxFrontend):
        def before_shards(self, ctx):
            super().before_shards(ctx)
            docker_client.create_container(
                shard_image, name=f"{group}-0",
                labels={"io.tesson.group": group, "io.tesson.role": "shard", "io.tesson.run": "the-winner"},
                host_config=docker_client.create_host_config(network_mode=net),
            )

    monkeypatch.setattr(frontend, "select", Raced.from_request)
    args = cli.parse(["run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "-p", "28175:8080", "--lb-image", lb_image,
                      shard_image])
    with pytest.raises(TessonError, match="already in use") as e:
        run_cmd.start(run_cmd.run_request(args))
    assert "network" not in str(e.value)  # it kept the network, and does not claim to have removed it
    left = docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"})
    assert [c["Names"][0] for c in left] == [f"/{group}-0"]  # the winner's only: the loser took its own
    assert left[0]["Labels"]["io.tesson.run"] == "the-winner"
    assert docker_client.inspect_network(net)["Name"] == net
    docker_client.start(f"{group}-0")  # the winner's shard starts on the network it relied on
    assert docker_client.inspect_container(f"{group}-0")["NetworkSettings"]["Networks"][net]["IPAddress"]


def test_stop_purge_with_a_foreign_container_on_the_network(group, docker_client, shard_image, lb_image):
    """A container outside the group attached to tesson-GROUP. stop --purge removes
    every container of the group and fails with one line that names what holds the network and the
    docker commands that finish the job (no tesson command finds the group any more); they work."""
    import re
    import shlex
    import subprocess

    net = f"tesson-{group}"
    foreign = f"{group}-visitor"
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", "28180:8080", "--lb-image", lb_image, shard_image)
    docker_client.create_container(shard_image, name=foreign,
                                   host_config=docker_client.create_host_config(network_mode=net))
    try:
        docker_client.start(foreign)
        r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
        assert r.returncode == 1, r.stderr
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "containers are removed" in err and foreign in err and f"docker network rm {net}" in err, err
        assert docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"}) == []
        assert docker_client.inspect_network(net)["Name"] == net
        assert tesson_cmd("stop", "-g", group, "--purge").returncode == 1  # "no group": hence the hint
        for cmd in re.findall(r"'(docker network [^']+)'", err):
            done = subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (cmd, done.stderr)
        assert [n for n in docker_client.networks(names=[net]) if n["Name"] == net] == []
    finally:
        docker_client.remove_container(foreign, force=True)
        for n in docker_client.networks(names=[net]):
            if n["Name"] == net:
                docker_client.remove_network(n["Id"])


def _cat(client, container: str, *paths: str) -> str:
    ex = client.exec_create(container, ["cat", *paths])["Id"]
    return client.exec_start(ex).decode(errors="replace")


def test_a_failed_stale_check_keeps_the_front_door_in_ps(group, docker_client, shard_image, lb_image):
    """When the balancer's address file cannot be read (here a symlink loop, a
    real daemon error, not a 404), ps says the check failed and still shows the ports; repair's
    reload writes a fresh file and the check works again."""
    port = 28190
    run_ok("-g", group, "-u", "pu", "-n", "1", "-p", f"{port}:8080", "--lb-image", lb_image, shard_image)
    ex = docker_client.exec_create(f"{group}-lb", ["ln", "-sf", "upstreams.json", "/etc/tesson/upstreams.json"])
    docker_client.exec_start(ex["Id"])
    assert docker_client.exec_inspect(ex["Id"])["ExitCode"] == 0
    fe = ps_json(group)["frontend"]
    assert fe["status"].startswith("running, stale check failed: ") and fe["stale"] is None, fe
    assert f"0.0.0.0:{port}->8080/tcp" in fe["ports"] and fe["container"] == f"{group}-lb", fe
    table = tesson_cmd("ps", "-g", group)
    assert table.returncode == 0, table.stderr
    (line,) = [ln for ln in table.stdout.splitlines() if ln.startswith("Frontend:")]
    assert "stale check failed" in line and f"0.0.0.0:{port}->8080/tcp" in line, line
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "reloaded balancer" in r.stdout, r.stdout
    fe = ps_json(group)["frontend"]
    assert fe["status"] == "running" and fe["stale"] == [], fe
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


def test_a_config_nginx_refuses_is_never_installed(group, docker_client, shard_image, lb_image, monkeypatch,
                                                  capsys):
    """A reload whose config nginx refuses fails repair (exit 1, nginx's
    words) and changes nothing in the balancer: the previous config stays live and on disk, so the
    balancer still serves, also after a restart of its container."""
    from tesson import cli
    from tesson.frontend import nginx

    port = 28195
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080", "--lb-image", lb_image, shard_image)
    plan = {s["index"]: s["cpus"] for s in ps_json(group)["shards"]}
    lb = f"{group}-lb"
    paths = ("/etc/tesson/nginx.conf", "/etc/tesson/upstreams.json", "/tmp/tesson-nginx.conf")
    before = [_cat(docker_client, lb, p) for p in paths]
    assert "upstream tcp_8080" in before[0] and before[2].replace(" down;", ";") == before[0]

    # a restarted shard makes repair reload; the config it renders is one nginx refuses
    docker_client.kill(f"{group}-1")
    render = nginx.NginxFrontend._render
    monkeypatch.setattr(nginx.NginxFrontend, "_render", lambda self, ctx, addresses: render(
        self, ctx, addresses).replace("stream {", "stream {\n    no_such_directive on;"))
    capsys.readouterr()
    code = cli.main(["repair", "-g", group])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("tesson:")]
    assert code == 1, err
    assert len(err) == 1 and "nginx refused the new config" in err[0], err
    assert 'unknown directive "no_such_directive"' in err[0], err
    monkeypatch.undo()

    after = [_cat(docker_client, lb, p) for p in paths]
    assert after == before
    ex = docker_client.exec_create(lb, ["ls", "-A", "/etc/tesson"])["Id"]
    assert sorted(docker_client.exec_start(ex).decode().split()) == ["nginx.conf", "upstreams.json"]
    # the container's next start reads the config on disk: still one nginx loads
    docker_client.restart(lb, timeout=2)
    assert_every_shard_answers_on_its_cpus(collect(port, 8), plan)
    state = docker_client.inspect_container(lb)
    assert state["State"]["Running"] and state["RestartCount"] == 0, state["State"]

    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])


# -- the balancer in the host network (every -p names a fixed host port) ----------------------------


def _listeners(port: int, kind: str = "tcp") -> list[tuple[str, str]]:
    """(address, owning process name) of every socket listening (tcp) or bound (udp) on ``port``
    in this network namespace (the host's: the daemon's), from the kernel's socket tables."""
    import psutil

    out = []
    for conn in psutil.net_connections(kind=kind):
        if conn.laddr and conn.laddr.port == port and (kind == "udp" or conn.status == psutil.CONN_LISTEN):
            name = psutil.Process(conn.pid).name() if conn.pid else "?"
            out.append((conn.laddr.ip, name))
    return sorted(set(out))


def _docker_proxies(port: int) -> list[str]:
    import psutil

    return [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "docker-proxy" and str(port) in (p.info["cmdline"] or [])]


def test_fixed_host_ports_put_the_balancer_in_the_host_network(group, docker_client, shard_image, lb_image):
    """nginx itself listens on the host ports (no docker-proxy in front of it), reaches every shard
    at its bridge address, holds only the capabilities it needs, and ps shows the ports as docker
    ps would; stop closes them, stop --purge leaves nothing."""
    import psutil

    n, port, low = 2, 28142, 1023
    run_ok("-g", group, "-u", "pu", "-n", str(n), "-p", f"{port}:8080", "-p", f"127.0.0.1:{low}:8080",
           "--lb-image", lb_image, "--lb-cpus", "1", shard_image)
    doc = ps_json(group)
    plan = {s["index"]: s["cpus"] for s in doc["shards"]}
    fe = doc["frontend"]
    assert fe["status"] == "running" and fe["stale"] == [], fe
    assert fe["ports"] == [f"0.0.0.0:{port}->8080/tcp", f"127.0.0.1:{low}->8080/tcp", f"[::]:{port}->8080/tcp"], fe
    table = tesson_cmd("ps", "-g", group)
    (line,) = [ln for ln in table.stdout.splitlines() if ln.startswith("Frontend:")]
    assert line == f"Frontend: nginx (running) 0.0.0.0:{port}->8080/tcp, 127.0.0.1:{low}->8080/tcp, [::]:{port}->8080/tcp"

    assert_every_shard_answers_on_its_cpus(collect(port, 4 * n), plan)
    assert_every_shard_answers_on_its_cpus(collect(low, 4 * n), plan)
    assert_every_shard_answers_on_its_cpus(collect(port, 4 * n, host="::1"), plan)

    # nginx owns the sockets; no docker-proxy for the group's ports
    assert _listeners(port) == [("0.0.0.0", "nginx"), ("::", "nginx")]
    assert _listeners(low) == [("127.0.0.1", "nginx")]
    assert _docker_proxies(port) == [] and _docker_proxies(low) == []

    lb = docker_client.inspect_container(f"{group}-lb")
    hc = lb["HostConfig"]
    assert hc["NetworkMode"] == "host" and not hc.get("PortBindings"), hc
    assert hc["CapDrop"] == ["ALL"] and sorted(hc["CapAdd"]) == ["NET_BIND_SERVICE", "SETGID", "SETUID"], hc
    assert hc["SecurityOpt"] == ["no-new-privileges"] and not hc.get("Privileged")
    assert hc["CpusetCpus"] == "1"
    # the master is root without the rest of root's capabilities; the workers are nobody, with none
    master = psutil.Process(lb["State"]["Pid"])
    workers = master.children()
    assert len(workers) == 1 and all(w.uids().effective == 65534 for w in workers)  # one per --lb-cpus CPU
    for proc, caps in ((master, {"net_bind_service", "setgid", "setuid"}), (workers[0], set())):
        eff = int([ln for ln in open(f"/proc/{proc.pid}/status") if ln.startswith("CapEff:")][0].split()[1], 16)
        names = {"setgid": 6, "setuid": 7, "net_bind_service": 10}
        assert {k for k, bit in names.items() if eff & (1 << bit)} == caps and eff & ~sum(1 << b for b in names.values()) == 0

    # repair of a healthy group does nothing; the reload path (a shard recreated) works in this mode
    docker_client.remove_container(f"{group}-1", force=True)
    r = tesson_cmd("repair", "-g", group)
    assert r.returncode == 0, r.stderr
    assert "reloaded balancer" in r.stdout, r.stdout
    assert ps_json(group)["frontend"]["stale"] == []
    _serves(port, 1, plan)

    r = tesson_cmd("stop", "-g", group, "-t", "1")
    assert r.returncode == 0, r.stderr
    assert _listeners(port) == [] and _listeners(low) == []
    assert ps_json(group)["frontend"]["ports"][0] == f"0.0.0.0:{port}->8080/tcp"  # as run asked, from the labels
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])
    assert _listeners(port) == []


def test_a_host_port_taken_from_nginx_in_the_host_network(group, docker_client, shard_image, lb_image, capsys,
                                                           monkeypatch):
    """A port this process did not judge (as with a daemon on another machine: tesson's own check is
    skipped) fails when nginx cannot listen there: one line naming the port, exit 1, nothing left."""
    from tesson import cli
    from tesson.frontend import nginx_io

    port = 28144
    monkeypatch.setattr(nginx_io, "check_host_ports", lambda *a, **k: None)
    with socket.socket(socket.AF_INET6) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        held.bind(("::", port))
        held.listen(1)
        capsys.readouterr()
        code = cli.main(["run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080",
                         "--lb-image", lb_image, shard_image])
        text = capsys.readouterr().err
        err = [ln for ln in text.splitlines() if ln.startswith("tesson:")]
    assert code == 1, text
    assert "Traceback" not in text
    assert len(err) == 1 and err[0].startswith(f"tesson: balancer {group}-lb: host port [::]:{port} is already in use"), err
    assert leftovers(docker_client, group) == ([], [])
    assert _listeners(port) == []


def test_a_host_port_taken_on_ipv6_only_is_caught_before_anything_is_made(group, docker_client, shard_image,
                                                                            lb_image):
    port = 28146
    with socket.socket(socket.AF_INET6) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        held.bind(("::", port))
        held.listen(1)
        r = tesson_cmd("run", "--lb", "nginx", "-g", group, "-u", "pu", "-n", "2", "-p", f"{port}:8080",
                       "--lb-image", lb_image, shard_image)
    assert r.returncode == 1
    assert r.stderr.strip() == f"tesson: host port [::]:{port}/tcp (from -p {port}:8080) is already in use on this machine"
    assert leftovers(docker_client, group) == ([], [])


def test_udp_in_the_host_network_has_no_docker_proxy(group, docker_client, lb_image, tmp_path):
    config = tmp_path / "udp-echo.json"
    config.write_text(json.dumps({"Entrypoint": ["python3", "-u", "-c", UDP_ECHO]}))
    port = 28148
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"127.0.0.1:{port}:9953/udp", "--lb-image", lb_image,
           "-c", str(config), lb_image)
    assert ps_json(group)["frontend"]["ports"] == [f"127.0.0.1:{port}->9953/udp"]
    assert _listeners(port, "udp") == [("127.0.0.1", "nginx")] and _docker_proxies(port) == []
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and seen != {0, 1}:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            s.sendto(b"x", ("127.0.0.1", port))
            try:
                seen.add(int(s.recv(2048).partition(b" ")[0]))
            except OSError:
                continue
    assert seen == {0, 1}
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [])
