"""run / ps / stop / repair with --gorb, against the Gorb stand-in container and real shards.

Every test runs the real CLI in a subprocess, looks at the real containers on the daemon, and reads
the stand-in's request journal (paths, bodies, order) and state. Groups are named ``t5-...``.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.conftest import http_get, parse_shard_answer, require, tesson_cmd
from tests.gorb_standin.fixtures import *  # noqa: F403

pytestmark = pytest.mark.docker

NO_ENV_GORB = {"GORB_URI": ""}


@pytest.fixture
def group(request, docker_client):
    """A fresh group name; every container labelled with it is removed afterwards."""
    name = f"t5-{request.node.name.split('[')[0].replace('test_', '')[:20].replace('_', '-')}-{os.getpid() % 100000}"
    yield name
    for c in docker_client.containers(all=True, filters={"label": [f"io.tesson.group={name}"]}):
        docker_client.remove_container(c["Id"], force=True, v=True)


def containers_of(docker_client, name: str) -> list[dict]:
    return docker_client.containers(all=True, filters={"label": [f"io.tesson.group={name}"]})


def published_port(docker_client, container: str, key: str) -> int:
    binds = docker_client.inspect_container(container)["NetworkSettings"]["Ports"][key]
    return int(next(b["HostPort"] for b in binds if b["HostIp"] in ("0.0.0.0", "127.0.0.1")))


def run(gorb_uri: str | None, group: str, image: str, *args: str, env=None):
    pre = ["--gorb", gorb_uri] if gorb_uri else []
    return tesson_cmd(*pre, "run", "-g", group, "-n", "2", *args, image, env={**NO_ENV_GORB, **(env or {})})


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def device_with_ipv4(skip=("lo",)) -> tuple[str, str] | None:
    import psutil

    for dev, addrs in sorted(psutil.net_if_addrs().items()):
        if dev in skip:
            continue
        for a in addrs:
            if a.family == socket.AF_INET:
                return dev, a.address
    return None


# --- run and stop ----------------------------------------------------------------------------------


def test_tcp_group_registers_service_then_one_backend_per_shard_and_stop_withdraws_it(
    gorb, group, shard_image, docker_client
):
    ok(run(gorb.uri("lo"), group, shard_image, "-p", "8080"))
    vs = f"{group}-8080-tcp"
    ports = [published_port(docker_client, f"{group}-{i}", "8080/tcp") for i in (0, 1)]
    assert gorb.calls() == [
        ("GET", "/service", None),
        ("PUT", f"/service/{vs}", {"port": 8080, "protocol": "tcp"}),
        ("PUT", f"/service/{vs}/{group}-0-8080-tcp", {"host": "127.0.0.1", "port": ports[0]}),
        ("PUT", f"/service/{vs}/{group}-1-8080-tcp", {"host": "127.0.0.1", "port": ports[1]}),
    ] + [c for c in gorb.calls()[4:] if c[0] == "GET"]  # then only ps's reads
    # the backends Gorb was given really lead to the shard of that name
    for i in (0, 1):
        backend = gorb.call("GET", f"/service/{vs}/{group}-{i}-8080-tcp")[1]["options"]
        answer = parse_shard_answer(http_get(backend["host"], backend["port"]))
        assert answer["uid"] == str(i) and answer["group"] == group
    # the URI is in the labels: stop finds Gorb without --gorb
    labels = containers_of(docker_client, group)[0]["Labels"]
    assert labels["io.tesson.gorb.uri"] == gorb.uri("lo") and labels["io.tesson.frontend"] == "gorb"
    gorb.call("DELETE", "/_standin/journal")
    ok(tesson_cmd("stop", "-g", group, "-t", "1", env=NO_ENV_GORB))
    assert gorb.calls() == [("DELETE", f"/service/{vs}", None)]
    assert gorb.state() == {"services": {}, "backends": {}}
    assert all(c["State"] != "running" for c in containers_of(docker_client, group))


def test_udp_and_addressed_ports_use_binding_address_device_address_and_method(
    gorb, group, shard_image, docker_client
):
    found = device_with_ipv4()
    require(found is not None, "needs a network device with IPv4 besides lo (e.g. docker0)")
    device, device_ip = found
    ok(run(None, group, shard_image, "-p", "127.0.0.1::53/udp", "-p", "8080", "--gorb-method", "rr",
           env={"GORB_URI": gorb.uri(device)}))
    udp, tcp = f"{group}-53-udp", f"{group}-8080-tcp"
    udp_ports = [published_port(docker_client, f"{group}-{i}", "53/udp") for i in (0, 1)]
    tcp_ports = [published_port(docker_client, f"{group}-{i}", "8080/tcp") for i in (0, 1)]
    assert gorb.calls()[:7] == [
        ("GET", "/service", None),
        ("PUT", f"/service/{udp}", {"port": 53, "protocol": "udp", "host": "127.0.0.1", "method": "rr"}),
        ("PUT", f"/service/{udp}/{group}-0-53-udp", {"host": "127.0.0.1", "port": udp_ports[0], "pulse": {"type": "none"}}),
        ("PUT", f"/service/{udp}/{group}-1-53-udp", {"host": "127.0.0.1", "port": udp_ports[1], "pulse": {"type": "none"}}),
        ("PUT", f"/service/{tcp}", {"port": 8080, "protocol": "tcp", "method": "rr"}),
        ("PUT", f"/service/{tcp}/{group}-0-8080-tcp", {"host": device_ip, "port": tcp_ports[0]}),
        ("PUT", f"/service/{tcp}/{group}-1-8080-tcp", {"host": device_ip, "port": tcp_ports[1]}),
    ]
    assert all(m == "GET" for m, _, _ in gorb.calls()[7:])
    ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))
    assert [c for c in gorb.calls() if c[0] == "DELETE"] == [("DELETE", f"/service/{udp}", None), ("DELETE", f"/service/{tcp}", None)]
    assert gorb.state()["services"] == {} and containers_of(docker_client, group) == []


def test_stop_warns_when_gorb_no_longer_knows_the_service(gorb, group, shard_image, docker_client):
    ok(run(gorb.uri(), group, shard_image, "-p", "8080"))
    gorb.reset()  # as a Gorb restart without a store would: everything forgotten
    r = ok(tesson_cmd("stop", "-g", group, "--purge", "-t", "1", env=NO_ENV_GORB))
    assert "did not know the service" in r.stderr
    assert gorb.journal()[0]["status"] == 404
    assert containers_of(docker_client, group) == []


# --- ps ----------------------------------------------------------------------------------------------


def test_ps_shows_backend_health_and_lists_shards_when_gorb_is_down(gorb, group, shard_image, docker_client):
    ok(run(gorb.uri(), group, shard_image, "-p", "8080"))
    vs = f"{group}-8080-tcp"
    gorb.set_backend(vs, f"{group}-1-8080-tcp", status=1, health=0.0)
    doc = json.loads(ok(tesson_cmd("ps", "-g", group, "--json", env=NO_ENV_GORB)).stdout)[0]
    fe = doc["frontend"]
    assert fe["kind"] == "gorb" and fe["uri"] == gorb.uri()
    (svc,) = fe["services"]
    assert svc["name"] == vs and svc["registered"] is True
    assert {b["name"]: b["status"] for b in svc["backends"]} == {f"{group}-0-8080-tcp": "up", f"{group}-1-8080-tcp": "down"}
    assert [b["health"] for b in svc["backends"]] == [1.0, 0.0]
    table = ok(tesson_cmd("ps", "-g", group, env=NO_ENV_GORB)).stdout
    assert f"{vs} 1/2 up" in table and "down" in table

    gorb.stop()
    try:
        r = ok(tesson_cmd("ps", "-g", group, env=NO_ENV_GORB))
        assert "Gorb unreachable" in r.stdout
        assert f"{group}-0" in r.stdout and f"{group}-1" in r.stdout  # the shards are still listed
        # stop still stops the containers, then says what it could not withdraw (exit 1)
        r = tesson_cmd("stop", "-g", group, "-t", "1", env=NO_ENV_GORB)
        assert r.returncode == 1 and "unreachable" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2
        assert all(c["State"] != "running" for c in containers_of(docker_client, group))
    finally:
        gorb.start()


# --- repair --------------------------------------------------------------------------------------------


def test_repair_reregisters_recreated_shards_and_removes_stale_backends(gorb, group, shard_image, docker_client):
    ok(run(gorb.uri(), group, shard_image, "-p", "8080"))
    vs, rs1 = f"{group}-8080-tcp", f"{group}-1-8080-tcp"
    old = published_port(docker_client, f"{group}-1", "8080/tcp")
    docker_client.remove_container(f"{group}-1", force=True)
    # something else takes the old port, so the recreated shard surely gets another one
    blocker = socket.socket()
    try:
        blocker.bind(("0.0.0.0", old))
    except OSError:
        pass
    try:
        gorb.call("DELETE", "/_standin/journal")
        r = ok(tesson_cmd("repair", "-g", group, env=NO_ENV_GORB))
    finally:
        blocker.close()
    new = published_port(docker_client, f"{group}-1", "8080/tcp")
    assert new != old
    mutations = [c for c in gorb.calls() if c[0] != "GET"]
    assert mutations == [
        ("PUT", f"/service/{vs}", {"port": 8080, "protocol": "tcp"}),  # 409: still there
        ("DELETE", f"/service/{vs}/{rs1}", None),
        ("PUT", f"/service/{vs}/{rs1}", {"host": "127.0.0.1", "port": new}),
    ]
    assert f"re-registered {rs1}" in r.stdout and f"was 127.0.0.1:{old}" in r.stdout
    state = gorb.state()
    assert state["backends"][rs1]["options"]["port"] == new
    assert state["services"][vs]["backends"] == [f"{group}-0-8080-tcp", rs1]

    # Gorb restarted and forgot everything: repair puts the service and every backend back
    gorb.reset()
    r = ok(tesson_cmd("repair", "-g", group, env=NO_ENV_GORB))
    assert "re-created Gorb service" in r.stdout
    state = gorb.state()
    assert sorted(state["services"][vs]["backends"]) == [f"{group}-0-8080-tcp", rs1]
    assert state["backends"][rs1]["options"]["port"] == new
    # and with everything in place, repair changes nothing in Gorb
    gorb.call("DELETE", "/_standin/journal")
    ok(tesson_cmd("repair", "-g", group, env=NO_ENV_GORB))
    assert [c for c in gorb.calls() if c[0] != "GET"] == [("PUT", f"/service/{vs}", {"port": 8080, "protocol": "tcp"})]


def test_repair_keeps_the_shards_it_recreated_when_gorb_fails(gorb, group, shard_image, docker_client):
    ok(run(gorb.uri(), group, shard_image, "-p", "8080"))
    docker_client.remove_container(f"{group}-1", force=True)
    gorb.fail_after(0, mode="500")  # every Gorb call of this repair fails
    try:
        r = tesson_cmd("repair", "-g", group, env=NO_ENV_GORB)
    finally:
        gorb.fail_after(10**6)  # Gorb answers again
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "error while calling into IPVS" in r.stderr
    assert f"recreated {group}-1" in r.stderr and "repair -g" in r.stderr
    # the recreated shard was not taken away again: it runs and serves
    state = docker_client.inspect_container(f"{group}-1")["State"]
    assert state["Running"], state
    # and once Gorb answers, repair registers it
    r = ok(tesson_cmd("repair", "-g", group, env=NO_ENV_GORB))
    port = published_port(docker_client, f"{group}-1", "8080/tcp")
    assert gorb.state()["backends"][f"{group}-1-8080-tcp"]["options"]["port"] == port


# --- all or nothing --------------------------------------------------------------------------------------


def test_gorb_500_halfway_rolls_back_what_this_run_made(gorb, group, shard_image, docker_client):
    gorb.fail_after(3, mode="500", times=1)  # GET /service, PUT service, PUT backend 0, then 500
    r = run(gorb.uri(), group, shard_image, "-p", "8080")
    assert r.returncode == 1, r.stderr
    assert "error while calling into IPVS" in r.stderr and "Traceback" not in r.stderr
    vs = f"{group}-8080-tcp"
    assert gorb.calls()[3:] == [
        ("PUT", f"/service/{vs}/{group}-1-8080-tcp", {"host": "127.0.0.1", "port": gorb.calls()[3][2]["port"]}),
        ("DELETE", f"/service/{vs}/{group}-0-8080-tcp", None),
        ("DELETE", f"/service/{vs}", None),
    ]
    assert gorb.state() == {"services": {}, "backends": {}}
    assert containers_of(docker_client, group) == []


def test_rollback_keeps_a_service_that_existed_before_the_run(gorb, group, shard_image, docker_client):
    vs = f"{group}-8080-tcp"
    assert gorb.call("PUT", f"/service/{vs}", {"port": 8080})[0] == 200
    gorb.call("DELETE", "/_standin/journal")
    gorb.fail_after(2, mode="500", times=1)  # GET /service, PUT service (409), then the first backend fails
    r = run(gorb.uri(), group, shard_image, "-p", "8080")
    assert r.returncode == 1 and "error while calling into IPVS" in r.stderr
    assert [c for c in gorb.calls() if c[0] == "DELETE"] == []
    assert list(gorb.state()["services"]) == [vs]
    assert containers_of(docker_client, group) == []


def test_gorb_stopping_halfway_rolls_back_the_containers(gorb, group, shard_image, docker_client):
    gorb.fail_after(3, mode="exit")  # the stand-in's process ends on the second backend: container stops
    try:
        r = run(gorb.uri(), group, shard_image, "-p", "8080")
        assert r.returncode == 1, r.stderr
        assert "is unreachable" in r.stderr and "Traceback" not in r.stderr
        assert "undo failed" in r.stderr  # the Gorb undos could not be done: each logged
        assert containers_of(docker_client, group) == []
    finally:
        gorb.start()


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, says",
    [
        ("t5nodevice://1.2.3.4:4672", "does not exist on this host"),
        ("eth0://1.2.3.4", "no port"),
        ("http://x", "no port"),
        ("lo://1.2.3.4:99999", "out of range"),
    ],
)
def test_bad_gorb_uri_is_exit_2_and_makes_nothing(uri, says, group, shard_image, docker_client):
    r = run(uri, group, shard_image, "-p", "8080")
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert containers_of(docker_client, group) == []


@pytest.mark.parametrize(
    "args, says",
    [
        ((), "needs at least one -p"),
        (("-p", "8080", "--gorb-method", "fastest"), "unknown --gorb-method"),
        (("-p", "9000/sctp"), "tcp and udp only"),
        (("-p", "8080:80", "-p", "8081:80"), "published twice"),
        (("-p", "8080", "--lb", "none"), "--lb none and --gorb (or GORB_URI) exclude each other"),
        (("-p", "8080", "--lb", "nginx"), "--lb nginx and --gorb (or GORB_URI) exclude each other"),
    ],
)
def test_options_gorb_cannot_take_are_exit_2(args, says, group, shard_image, docker_client):
    r = run("lo://127.0.0.1:4672", group, shard_image, *args)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert containers_of(docker_client, group) == []


def test_gorb_uri_from_the_environment_with_lb_none_is_exit_2(group, shard_image, docker_client):
    r = run(None, group, shard_image, "-p", "8080", "--lb", "none", env={"GORB_URI": "lo://127.0.0.1:4672"})
    assert r.returncode == 2, r.stderr
    assert "--lb none and --gorb (or GORB_URI) exclude each other" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert containers_of(docker_client, group) == []


def test_gorb_that_is_down_fails_run_before_any_container(group, shard_image, docker_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run(f"lo://127.0.0.1:{port}", group, shard_image, "-p", "8080")
    assert r.returncode == 1
    assert f"Gorb at http://127.0.0.1:{port} is unreachable" in r.stderr and "Traceback" not in r.stderr
    assert containers_of(docker_client, group) == []
