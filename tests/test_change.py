"""scale and update on the real daemon, with wrk (loopback, 8 keep-alive connections) running
through the group's front door for the whole change, and Gorb's calls read from its stand-in's
journal. Shards are the tesson image's demo-server (it drains on SIGTERM). Groups are ``t14-*``,
host ports 28400-28419.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, remove_group, require, tesson_cmd
from tests.gorb_standin.fixtures import *  # noqa: F403

pytestmark = pytest.mark.docker

NO_GORB = {"GORB_URI": ""}


def _cleanup(client, group: str) -> None:
    remove_group(client, group)


@pytest.fixture
def group(request, docker_client):
    name = "t14-" + request.node.name.split("[")[0].replace("test_", "").replace("_", "-")[:30]
    _cleanup(docker_client, name)
    yield name
    _cleanup(docker_client, name)


@pytest.fixture(scope="session")
def images(docker_client, tesson_image):
    """``(a, b, bad)``: the tesson image, another build of it (another tag, another id), and one
    whose command exits at once."""
    out = [tesson_image]
    for tag, extra in (("t14-test:b", 'LABEL io.tesson.test="b"'), ("t14-test:bad", 'ENTRYPOINT ["sh", "-c", "echo broken >&2; exit 3"]')):
        dockerfile = f"FROM {tesson_image}\n{extra}\n".encode()
        for _ in docker_client.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, network_mode="none", decode=True):
            pass
        docker_client.inspect_image(tag)
        out.append(tag)
    return tuple(out)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def ps_json(group: str) -> dict:
    (doc,) = json.loads(ok(tesson_cmd("ps", "-g", group, "--json")).stdout)
    return doc


class Wrk:
    """wrk through the front door until stopped (SIGINT: it prints its summary)."""

    def __init__(self, port: int):
        require(shutil.which("wrk") is not None, "wrk is not installed (apt-get install wrk)")
        self.proc = subprocess.Popen(["wrk", "-t1", "-c8", "-d300s", f"http://127.0.0.1:{port}/"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        n = re.search(r"(\d+) requests in", out)
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"requests": int(n.group(1)) if n else 0, "socket_errors": sum(map(int, errors.groups())) if errors else 0,
                "non2xx": int(non2xx.group(1)) if non2xx else 0, "text": out}


def shard_inspects(client, group: str) -> dict[str, dict]:
    found = client.containers(all=True, filters={"label": [f"io.tesson.group={group}", "io.tesson.role=shard"]})
    return {c["Names"][0].lstrip("/"): client.inspect_container(c["Id"]) for c in found}


def allowed_cpus_inside(client, cid: str) -> str:
    ex = client.exec_create(cid, ["sh", "-c", "grep Cpus_allowed_list /proc/1/status"])
    return client.exec_start(ex).decode().split(":", 1)[1].strip()


def test_scale_2_4_2_and_update_behind_nginx_drop_no_request_and_repin_live(group, images, docker_client):
    a, b, _ = images
    port = 28400
    ok(tesson_cmd("run", "-g", group, "--lb", "nginx", "-n", "2", "-p", f"127.0.0.1:{port}:8080", "--lb-image", a, a,
                  "demo-server", "--port", "8080", env=NO_GORB))
    before = shard_inspects(docker_client, group)
    wrk = Wrk(port)
    try:
        up = ok(tesson_cmd("scale", "-g", group, "-n", "4"))
        assert f"created {group}-2" in up.stdout and f"created {group}-3" in up.stdout, up.stdout
        doc = ps_json(group)
        assert doc["size"] == 4 and doc["status"] == "running 4/4" and doc["change"] is None, doc
        # every shard where the new plan puts it, seen from inside; the re-pinned ones not restarted
        after = shard_inspects(docker_client, group)
        for s in doc["shards"]:
            cid = after[s["name"]]["Id"]
            assert allowed_cpus_inside(docker_client, cid) == ",".join(map(str, s["cpus"])) or \
                allowed_cpus_inside(docker_client, cid) == f"{s['cpus'][0]}-{s['cpus'][-1]}"
        for name, old in before.items():
            assert after[name]["Id"] == old["Id"] and after[name]["State"]["StartedAt"] == old["State"]["StartedAt"]
            assert after[name]["RestartCount"] == 0
        if "re-pinned" in up.stdout:  # a 2-CPU machine: shard 1 moves from CPU 1 to CPU 0
            moved = re.search(rf"re-pinned ({group}-\d+) live \(cpus (\S+) -> (\S+)\)", up.stdout)
            assert after[moved.group(1)]["HostConfig"]["CpusetCpus"] == moved.group(3)
            assert allowed_cpus_inside(docker_client, after[moved.group(1)]["Id"]) == moved.group(3)
        down = ok(tesson_cmd("scale", "-g", group, "-n", "2", "--drain-timeout", "1"))
        assert f"removed {group}-3" in down.stdout, down.stdout
        doc = ps_json(group)
        assert doc["size"] == 2 and [s["name"] for s in doc["shards"]] == [f"{group}-0", f"{group}-1"]
        assert sorted(shard_inspects(docker_client, group)) == [f"{group}-0", f"{group}-1"]
        upd = ok(tesson_cmd("update", "-g", group, "--image", b, "--drain-timeout", "1"))
        assert f"replaced {group}-0" in upd.stdout and f"replaced {group}-1" in upd.stdout, upd.stdout
    finally:
        result = wrk.stop()
    assert result["requests"] > 500, result["text"]
    assert result["socket_errors"] == 0 and result["non2xx"] == 0, result["text"]
    b_id = docker_client.inspect_image(b)["Id"]
    final = shard_inspects(docker_client, group)
    assert sorted(final) == [f"{group}-0", f"{group}-1"]  # no .prev left
    assert all(i["Image"] == b_id for i in final.values())
    doc = ps_json(group)
    assert doc["image"] == b and doc["status"] == "running 2/2"
    names = [c["Names"][0].lstrip("/") for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"})]
    assert f"{group}-lock" not in names and sum(n.startswith(f"{group}-spec.") for n in names) == 1, names
    # repair sees the new group as it is: nothing to do
    assert "nothing to repair" in ok(tesson_cmd("repair", "-g", group)).stdout


def test_an_update_whose_command_exits_at_once_stops_at_the_first_shard_and_the_group_keeps_serving(
        group, images, docker_client):
    a, _, bad = images
    port = 28401
    ok(tesson_cmd("run", "-g", group, "--lb", "nginx", "-n", "2", "-p", f"127.0.0.1:{port}:8080", "--lb-image", a, a,
                  "demo-server", "--port", "8080", env=NO_GORB))
    before = {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()}
    wrk = Wrk(port)
    try:
        r = tesson_cmd("update", "-g", group, "--image", bad, "--drain-timeout", "0.5")
    finally:
        result = wrk.stop()
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"stopped at {group}-0" in err[0] and "exit code 3" in err[0] and "broken" in err[0], err
    assert "no shard was replaced" in err[0]
    # the same containers, running the previous version; nothing left of the attempt
    assert {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()} == before
    doc = ps_json(group)
    assert doc["image"] == a and doc["status"] == "running 2/2" and doc["change"] is None, doc
    assert result["socket_errors"] == 0 and result["non2xx"] == 0 and result["requests"] > 100, result["text"]


def test_a_second_change_is_refused_naming_the_holder_and_ps_shows_the_change(group, images, docker_client):
    a, b, _ = images
    ok(tesson_cmd("run", "-g", group, "--lb", "nginx", "-n", "2", "-p", "127.0.0.1:28402:8080", "--lb-image", a, a,
                  "demo-server", "--port", "8080", env=NO_GORB))
    slow = subprocess.Popen([sys.executable, "-m", "tesson", "update", "-g", group, "--image", b, "--drain-timeout", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            doc = ps_json(group)
            if doc["change"]:
                break
            time.sleep(0.2)
        assert doc["change"]["verb"] == "update" and doc["change"]["image"] == b and doc["change"]["old_image"] == a
        assert re.match(r"updating [0-2]/2, ", doc["status"]), doc["status"]
        table = ok(tesson_cmd("ps", "-g", group)).stdout
        assert f"[{b} <- {a}]" in table.splitlines()[0] and "updating" in table.splitlines()[0], table
        r = tesson_cmd("scale", "-g", group, "-n", "3")
        assert r.returncode == 1 and f"group '{group}' is being changed: update to {b} by " in r.stderr, r.stderr
        assert f"(pid {slow.pid})" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        out, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err
    assert ps_json(group)["size"] == 2  # the refused scale changed nothing


def test_errors_are_one_line_and_change_nothing(group, images, docker_client, tmp_path):
    a, _, _ = images
    r = tesson_cmd("scale", "-g", group, "-n", "2")
    assert r.returncode == 1 and r.stderr.strip() == f"tesson: no group named '{group}' (tesson ls lists every group)"
    ok(tesson_cmd("run", "-g", group, "-n", "1", "--lb", "none", a, "demo-server", "--port", "8080", env=NO_GORB))
    before = {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()}
    r = tesson_cmd("update", "-g", group, "--image", "t14-test:nosuchtag")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "not found on the daemon" in r.stderr
    cfg = tmp_path / "c.json"
    cfg.write_text('{"HostConfig": {"CpusetCpus": "0"}}')
    r = tesson_cmd("update", "-g", group, "-c", str(cfg))
    assert r.returncode == 2 and "CpusetCpus" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for n in ("0", "-1"):
        r = tesson_cmd("scale", "-g", group, "-n", n)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()} == before
    names = [c["Names"][0] for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"})]
    assert len(names) == 1, names


def test_gorb_hears_weight_zero_before_removal_and_the_new_backend_after_health(gorb, group, images, docker_client):
    a, b, _ = images
    ok(tesson_cmd("--gorb", gorb.uri("lo"), "run", "-g", group, "-n", "2", "-p", "8080", a, "demo-server", "--port", "8080",
                  env=NO_GORB))
    vs = f"/service/{group}-8080-tcp"
    rs = lambda i: f"{vs}/{group}-{i}-8080-tcp"
    gorb.call("DELETE", "/_standin/journal")
    ok(tesson_cmd("scale", "-g", group, "-n", "3", env=NO_GORB))
    port2 = int(docker_client.inspect_container(f"{group}-2")["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
    writes = [(m, p, body) for m, p, body in gorb.calls() if m != "GET"]
    assert ("PUT", rs(2), {"host": "127.0.0.1", "port": port2}) in writes and not any(p == rs(0) for _, p, _ in writes)
    gorb.call("DELETE", "/_standin/journal")
    ok(tesson_cmd("scale", "-g", group, "-n", "2", "--drain-timeout", "0.5", env=NO_GORB))
    writes = [(m, p, body) for m, p, body in gorb.calls() if m != "GET" and p != vs]  # PUT vs: repair's check
    assert writes == [("PATCH", rs(2), {"weight": 0}), ("DELETE", rs(2), None)], writes
    gorb.call("DELETE", "/_standin/journal")
    ok(tesson_cmd("update", "-g", group, "--image", b, "--drain-timeout", "0.5", env=NO_GORB))
    ports = [int(docker_client.inspect_container(f"{group}-{i}")["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
             for i in (0, 1)]
    writes = [(m, p, body) for m, p, body in gorb.calls() if m != "GET" and p != vs]
    assert writes == [
        ("PATCH", rs(0), {"weight": 0}), ("DELETE", rs(0), None), ("PUT", rs(0), {"host": "127.0.0.1", "port": ports[0]}),
        ("PATCH", rs(1), {"weight": 0}), ("DELETE", rs(1), None), ("PUT", rs(1), {"host": "127.0.0.1", "port": ports[1]}),
    ], writes
    backends = gorb.state()["backends"]
    assert sorted(backends) == [f"{group}-0-8080-tcp", f"{group}-1-8080-tcp"]
    assert all(backends[f"{group}-{i}-8080-tcp"]["options"]["port"] == ports[i] for i in (0, 1))


def test_an_update_killed_halfway_is_shown_as_it_is_and_repair_finishes_or_undoes_the_step(group, images, docker_client):
    a, b, _ = images
    ok(tesson_cmd("run", "-g", group, "-n", "2", "--lb", "none", "-p", "8080", a, "demo-server", "--port", "8080", env=NO_GORB))
    victim = subprocess.Popen([sys.executable, "-m", "tesson", "update", "-g", group, "--image", b, "--drain-timeout", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, **NO_GORB})
    deadline = time.monotonic() + 60
    prev = f"/{group}-0.prev"
    while time.monotonic() < deadline:  # kill it once shard 0 has been set aside
        if any(c["Names"][0] == prev for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"})):
            break
        time.sleep(0.05)
    victim.kill()
    victim.communicate(timeout=30)
    doc = ps_json(group)
    assert doc["change"]["verb"] == "update" and doc["change"]["pid"] == victim.pid, doc  # the lock it left
    assert doc["status"].startswith("updating ") and doc["image"] == b, doc  # the target spec was written first
    repaired = ok(tesson_cmd("repair", "-g", group))  # its holder died here: repair takes the group over
    assert ("restored the previous version of" in repaired.stdout or "finished the update of" in repaired.stdout), repaired.stdout
    assert "removed the lock" in repaired.stdout, repaired.stdout
    names = sorted(c["Names"][0] for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"}))
    assert not any(n.endswith(".prev") or n.endswith("-lock") for n in names), names
    doc = ps_json(group)
    assert doc["change"] is None and doc["status"].startswith("running 2/2"), doc
    assert ok(tesson_cmd("repair", "-g", group)).stdout.strip().endswith("nothing to repair")
    # and the same update again brings every shard to the new image
    ok(tesson_cmd("update", "-g", group, "--image", b, "--drain-timeout", "0"))
    assert ps_json(group)["status"] == "running 2/2"
