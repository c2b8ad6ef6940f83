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

import docker
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
    yield tuple(out)
    _remove_images(docker_client, out[1:])


def _remove_images(docker_client, tags) -> None:
    """The tests' own derived images go at the end (a layer each over the tesson image)."""
    for tag in tags:
        try:
            docker_client.remove_image(tag, force=True)
        except docker.errors.NotFound:
            pass


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


def nft_backends(group: str) -> list[str] | None:
    """The addresses in the kernel door's map, read from the kernel (None: no table)."""
    from tesson.frontend import kernel_rules as K

    r = subprocess.run(["nft", "-j", "list", "table", "ip", K.table_name(group)], capture_output=True, text=True)
    return K.read(json.loads(r.stdout))["backends"] if r.returncode == 0 else None


def shard_states(client, group: str) -> dict[str, tuple[str, bool, str]]:
    """``{name: (id, running, address on the group's network)}`` of the group's shards."""
    out = {}
    for name, info in shard_inspects(client, group).items():
        nets = info["NetworkSettings"]["Networks"] or {}
        addr = (nets.get(f"tesson-{group}") or {}).get("IPAddress") or ""
        out[name] = (info["Id"], bool(info["State"]["Running"]), addr)
    return out


def watch_door(client, group: str, proc: subprocess.Popen, seen: list) -> None:
    """Until ``proc`` ends: every ~0.1 s, (the kernel's map, the shards' states), into ``seen``."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            seen.append((nft_backends(group), shard_states(client, group)))
        except Exception:  # a container removed between the list and its inspect: look again
            pass
        time.sleep(0.1)


def change(*args: str, client, group: str) -> tuple[subprocess.CompletedProcess, list]:
    """A tesson command run while the kernel's map and the shards are watched."""
    seen: list = []
    proc = subprocess.Popen([sys.executable, "-m", "tesson", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, **NO_GORB})
    watch_door(client, group, proc, seen)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), seen


def test_scale_2_4_2_and_update_through_the_kernel_door_drop_no_request(group, images, docker_client):
    """The kernel door's agent holds a shard out of its map from before the drain until it is
    healthy again: read back from the kernel while the change runs, with wrk through the door."""
    require(os.geteuid() == 0 and shutil.which("nft") is not None, "needs root and nft to read the kernel's map")
    a, b, _ = images
    port = 28403
    ok(tesson_cmd("run", "-g", group, "--lb", "kernel", "-n", "2", "-p", f"127.0.0.1:{port}:8080", "--lb-image", a, a,
                  "demo-server", "--port", "8080", env=NO_GORB))
    first = shard_states(docker_client, group)
    assert sorted(nft_backends(group)) == sorted(addr for _, _, addr in first.values())
    wrk = Wrk(port)
    try:
        up, seen_up = change("scale", "-g", group, "-n", "4", client=docker_client, group=group)
        ok(up)
        assert f"created {group}-2" in up.stdout and f"created {group}-3" in up.stdout, up.stdout
        assert len(nft_backends(group)) == 4
        # wrk's kept-alive connections all went to shards 0 and 1 (the only ones at its start): idle
        # connections through the door reach 2 and 3 too (32 at random: each is missed with p = 1e-4),
        # so their drain lasts its timeout and the watcher sees them held out while they run
        import socket

        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(32)]
        try:
            down, seen_down = change("scale", "-g", group, "-n", "2", "--drain-timeout", "2", client=docker_client,
                                     group=group)
        finally:
            for conn in idle:
                conn.close()
        ok(down)
        assert f"removed {group}-3" in down.stdout, down.stdout
        upd, seen_upd = change("update", "-g", group, "--image", b, "--drain-timeout", "1", client=docker_client, group=group)
        ok(upd)
        assert f"replaced {group}-0" in upd.stdout and f"replaced {group}-1" in upd.stdout, upd.stdout
    finally:
        result = wrk.stop()
    assert result["requests"] > 500, result["text"]
    assert result["socket_errors"] == 0 and result["non2xx"] == 0, result["text"]

    def only_running_shards_in_map(seen):
        for backends, states in seen:
            running = {addr for name, (_, up, addr) in states.items() if up and not name.endswith(".prev")}
            assert set(backends or []) <= running, (backends, states)

    def held_while_running(seen, name, same_id=None, other_id=None):
        """Seen running with an address, yet not in the map (same container as, or another than, given)."""
        return any(name in st and st[name][1] and st[name][2] and st[name][2] not in (m or [])
                   and (same_id is None or st[name][0] == same_id) and (other_id is None or st[name][0] != other_id)
                   for m, st in seen)

    # scale up: the new shards run a while (their settle check) before they enter the map
    only_running_shards_in_map(seen_up)
    assert held_while_running(seen_up, f"{group}-2") and held_while_running(seen_up, f"{group}-3")
    # scale down: shards 2 and 3 out of the map while they still run (their drain)
    only_running_shards_in_map(seen_down)
    assert held_while_running(seen_down, f"{group}-2") and held_while_running(seen_down, f"{group}-3")
    # update: the old shard 0 out of the map while it drains; its successor in only once settled
    only_running_shards_in_map(seen_upd)
    old0 = first[f"{group}-0"][0]
    assert held_while_running(seen_upd, f"{group}-0", same_id=old0)
    assert held_while_running(seen_upd, f"{group}-0", other_id=old0)
    final = shard_states(docker_client, group)
    assert sorted(final) == [f"{group}-0", f"{group}-1"] and all(r for _, r, _ in final.values())
    assert sorted(nft_backends(group)) == sorted(addr for _, _, addr in final.values())
    fe = ps_json(group)["frontend"]
    assert fe["in_rotation"] == [f"{group}-0", f"{group}-1"] and fe["held_out"] == [], fe  # no hold outlives a change


def test_a_scale_up_the_kernel_door_cannot_hold_out_is_refused_and_leaves_nothing(group, images, docker_client):
    """Without its agent the kernel door cannot keep new shards out until they are healthy: the scale
    makes nothing (no shard, no spec record), says why in one line; after a repair it scales."""
    require(os.geteuid() == 0 and shutil.which("nft") is not None, "needs root and nft for the kernel door")
    a, _, _ = images
    port = 28409
    ok(tesson_cmd("run", "-g", group, "--lb", "kernel", "-n", "2", "-p", f"127.0.0.1:{port}:8080", "--lb-image", a, a,
                  "demo-server", "--port", "8080", env=NO_GORB))

    def containers():
        found = docker_client.containers(all=True, filters={"label": [f"io.tesson.group={group}"]})
        return sorted((c["Names"][0].lstrip("/"), c["Id"]) for c in found)

    docker_client.stop(f"{group}-lb", timeout=2)
    before = containers()
    r = tesson_cmd("scale", "-g", group, "-n", "3")
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"{group}-2" in err[0] and "nothing changed" in err[0], err
    assert f"kernel agent {group}-lb is not running" in err[0] and f"tesson repair -g {group}" in err[0], err
    assert containers() == before  # no shard 2, no spec record, the lock gone
    doc = ps_json(group)
    assert doc["size"] == 2 and doc["change"] is None, doc
    ok(tesson_cmd("repair", "-g", group))
    up = ok(tesson_cmd("scale", "-g", group, "-n", "3"))
    assert f"created {group}-2" in up.stdout, up.stdout
    doc = ps_json(group)
    assert doc["size"] == 3 and doc["frontend"]["in_rotation"] == [f"{group}-{i}" for i in range(3)], doc


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


def _get(sock) -> bytes:
    """One GET on a kept-alive connection: the whole answer (headers and Content-Length body)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t14\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_a_drain_ends_with_the_last_connection_and_leaves_an_idle_one_to_the_shards_clean_close(group, images, docker_client):
    """The drain alone, on a demo-server container: no connection -> it ends after the door's lag;
    a connection the client closes -> it ends right after; an idle kept-alive one -> it waits its
    whole timeout (idle cannot be told from busy), leaves it working, and the shard's graceful
    stop closes it cleanly (EOF, no reset)."""
    import socket
    import threading

    from tesson.runtime.drain import DRAIN_FLOOR, drain

    a = images[0]
    cid = docker_client.create_container(a, ["demo-server", "--port", "8080"], name=group,
                                         labels={"io.tesson.group": group})["Id"]
    docker_client.start(cid)
    ip = docker_client.inspect_container(cid)["NetworkSettings"]["IPAddress"]
    deadline = time.monotonic() + 20
    while True:  # until it listens (bounded)
        try:
            probe = socket.create_connection((ip, 8080), timeout=1)
            assert b"200 OK" in _get(probe)
            probe.close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the demo server never listened"
            time.sleep(0.1)
    time.sleep(0.2)  # the probe's close is seen by the server

    took = drain(docker_client, cid, 5.0)
    assert DRAIN_FLOOR <= took < DRAIN_FLOOR + 0.5, took  # the door's lag, then nothing left to wait for
    assert drain(docker_client, cid, 5.0, floor=0.0) < 0.4  # the kernel door has no lag

    closing = socket.create_connection((ip, 8080), timeout=5)
    assert b"200 OK" in _get(closing)
    threading.Timer(1.0, closing.close).start()
    took = drain(docker_client, cid, 6.0, floor=0.0)
    assert 0.9 < took < 2.0, took  # right after the client closed, not at the timeout

    idle = socket.create_connection((ip, 8080), timeout=10)
    assert b"200 OK" in _get(idle)
    took = drain(docker_client, cid, 1.5, floor=0.0)
    assert took >= 1.5, took
    assert b"200 OK" in _get(idle) and b"Connection: close" not in _get(idle)  # the drain cut nothing
    began = time.monotonic()
    docker_client.stop(cid, timeout=10)
    stopped = time.monotonic() - began
    assert idle.recv(4096) == b""  # a clean close (FIN); a reset would raise ConnectionResetError
    idle.close()
    assert stopped < 5 and docker_client.inspect_container(cid)["State"]["ExitCode"] == 0, stopped


# -- Docker healthchecks, --rollback all, a restore that fails partway ---------------------------------

# Healthy once PID 1 has lived 1.5 s and port 8080 answers: a successor spends that long "starting".
_SLOW_HEALTH = ("import os, socket; up = float(open('/proc/uptime').read().split()[0]); "
                "start = int(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19]) / os.sysconf('SC_CLK_TCK'); "
                "assert up - start > 1.5; socket.create_connection(('127.0.0.1', 8080), 1).close()")


@pytest.fixture(scope="session")
def health_images(docker_client, images):
    """``{"slow": healthy after 1.5 s, "never": never healthy, "flaky": shard 1 exits at once}``,
    each the tesson image plus one line."""
    a = images[0]
    lines = {
        "slow": f"HEALTHCHECK --interval=300ms --timeout=2s --retries=30 CMD {json.dumps(['python3', '-c', _SLOW_HEALTH])}",
        "never": 'HEALTHCHECK --interval=300ms --timeout=2s --retries=1 CMD ["false"]',
        "flaky": 'ENTRYPOINT ["sh", "-c", "if [ \\"$TESSON_UID\\" = 1 ]; then echo broken >&2; exit 3; fi; exec tesson \\"$@\\"", "sh"]',
    }
    out = {}
    for key, line in lines.items():
        tag = f"t14-test:{key}"
        for _ in docker_client.build(fileobj=io.BytesIO(f"FROM {a}\n{line}\n".encode()), tag=tag, rm=True,
                                     network_mode="none", decode=True):
            pass
        docker_client.inspect_image(tag)
        out[key] = tag
    yield out
    _remove_images(docker_client, out.values())


def run_kernel_group(group: str, image: str, port: int, n: int = 2) -> None:
    ok(tesson_cmd("run", "-g", group, "--lb", "kernel", "-n", str(n), "-p", f"127.0.0.1:{port}:8080", "--lb-image", image,
                  image, "demo-server", "--port", "8080", env=NO_GORB))


def test_an_update_to_an_image_with_a_healthcheck_waits_for_healthy_before_the_door(group, images, health_images,
                                                                                     docker_client):
    require(os.geteuid() == 0 and shutil.which("nft") is not None, "needs root and nft to read the kernel's map")
    a = images[0]
    run_kernel_group(group, a, 28404)
    seen: list = []
    proc = subprocess.Popen([sys.executable, "-m", "tesson", "update", "-g", group, "--image", health_images["slow"],
                             "--drain-timeout", "0", "--health-timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **NO_GORB})
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            inspects = shard_inspects(docker_client, group)
            seen.append((nft_backends(group), {
                n: (i["NetworkSettings"]["Networks"].get(f"tesson-{group}", {}).get("IPAddress"),
                    ((i["State"].get("Health") or {}).get("Status"))) for n, i in inspects.items()}))
        except Exception:
            pass
        time.sleep(0.1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"replaced {group}-0" in out and f"replaced {group}-1" in out, out
    # a successor is running (and answering) while "starting": it is not in the map then
    starting = [(m, st) for m, st in seen if any(h == "starting" for _, h in st.values())]
    assert starting, "no successor was ever seen starting"
    for m, st in seen:
        assert not {addr for addr, h in st.values() if h == "starting"} & set(m or []), (m, st)
    final = shard_inspects(docker_client, group)
    assert sorted(final) == [f"{group}-0", f"{group}-1"]
    assert all(i["State"]["Health"]["Status"] == "healthy" for i in final.values())
    assert ps_json(group)["image"] == health_images["slow"] and len(nft_backends(group)) == 2


def test_an_update_that_never_becomes_healthy_stops_at_the_first_shard_and_the_group_keeps_serving(
        group, images, health_images, docker_client):
    a = images[0]
    port = 28405
    run_kernel_group(group, a, port)
    before = {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()}
    wrk = Wrk(port)
    try:
        began = time.monotonic()
        r = tesson_cmd("update", "-g", group, "--image", health_images["never"], "--drain-timeout", "0.5",
                       "--health-timeout", "5", env=NO_GORB)
        took = time.monotonic() - began
    finally:
        result = wrk.stop()
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"stopped at {group}-0" in err[0] and "did not become healthy (unhealthy" in err[0], err
    assert "no shard was replaced" in err[0] and took < 30, (err, took)
    assert {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()} == before
    doc = ps_json(group)
    assert doc["image"] == a and doc["status"] == "running 2/2" and doc["change"] is None, doc
    assert doc["frontend"]["in_rotation"] == [f"{group}-0", f"{group}-1"] and doc["frontend"]["held_out"] == []
    assert result["socket_errors"] == 0 and result["non2xx"] == 0 and result["requests"] > 100, result["text"]


def test_update_rollback_all_undoes_the_shards_already_replaced(group, images, health_images, docker_client):
    a, _, _ = images
    port = 28406
    run_kernel_group(group, a, port, n=3)
    before = {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()}
    wrk = Wrk(port)
    try:
        r = tesson_cmd("update", "-g", group, "--image", health_images["flaky"], "--rollback", "all",
                       "--drain-timeout", "0.5", env=NO_GORB)
    finally:
        result = wrk.stop()
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"stopped at {group}-1" in err[0] and "exit code 3" in err[0], err
    assert f"rolled back {group}-0 to {a}" in err[0], err
    a_id = docker_client.inspect_image(a)["Id"]
    final = shard_inspects(docker_client, group)
    assert sorted(final) == [f"{group}-0", f"{group}-1", f"{group}-2"]  # no .prev left
    assert all(i["Image"] == a_id and i["State"]["Running"] for i in final.values())
    assert final[f"{group}-0"]["Id"] != before[f"{group}-0"]  # replaced, then replaced back
    assert final[f"{group}-1"]["Id"] == before[f"{group}-1"] and final[f"{group}-2"]["Id"] == before[f"{group}-2"]
    doc = ps_json(group)
    assert doc["image"] == a and doc["status"] == "running 3/3" and doc["change"] is None, doc
    assert doc["frontend"]["held_out"] == [] and len(doc["frontend"]["in_rotation"]) == 3
    assert "nothing to repair" in ok(tesson_cmd("repair", "-g", group)).stdout
    assert result["socket_errors"] == 0 and result["non2xx"] == 0 and result["requests"] > 100, result["text"]


def test_a_restore_that_fails_partway_leaves_a_group_ps_describes_and_repair_converges(group, images, docker_client):
    """An update killed once shard 0 is set aside; its successor is not up, so repair restores the
    previous container: it removes the successor and renames the previous one back, but cannot
    start it (the shard's fixed host port is taken meanwhile). ps still describes the group;
    once the port is free, repair brings it back, and the same update again finishes."""
    import socket

    a, b, _ = images
    port = 28407
    ok(tesson_cmd("run", "-g", group, "-n", "1", "--lb", "none", "-p", f"127.0.0.1:{port}:8080", a, "demo-server",
                  "--port", "8080", env=NO_GORB))
    victim = subprocess.Popen([sys.executable, "-m", "tesson", "update", "-g", group, "--image", b, "--drain-timeout", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, **NO_GORB})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once shard 0 has been set aside
        if any(c["Names"][0] == f"/{group}-0.prev" for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"})):
            break
        time.sleep(0.02)
    victim.kill()
    victim.communicate(timeout=30)
    successor = [c for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"})
                 if c["Names"][0] == f"/{group}-0"]
    if successor:  # not up: that is what makes repair restore rather than finish
        try:
            docker_client.stop(successor[0]["Id"], timeout=2)
        except docker.errors.NotFound:  # killed inside its create: the daemon dropped the half-made container
            pass
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        r = tesson_cmd("repair", "-g", group)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stdout + r.stderr
        assert f"{group}-0" in r.stderr and "could not be put back" in r.stderr, r.stderr
        names = sorted(c["Names"][0] for c in docker_client.containers(all=True, filters={"label": f"io.tesson.group={group}"}))
        assert f"/{group}-0" in names and f"/{group}-0.prev" not in names, names  # renamed back, then its start failed
        doc = ps_json(group)  # describable: the shard is there, stopped
        assert doc["group"] == group and [s["name"] for s in doc["shards"]] == [f"{group}-0"], doc
        assert doc["shards"][0]["state"] != "running" and not doc["status"].startswith("running"), doc
    finally:
        holder.close()
    repaired = ok(tesson_cmd("repair", "-g", group))
    assert f"restarted {group}-0" in repaired.stdout, repaired.stdout
    doc = ps_json(group)
    assert doc["status"].startswith("running 1/1") and doc["change"] is None, doc
    ok(tesson_cmd("update", "-g", group, "--image", b, "--drain-timeout", "0"))
    b_id = docker_client.inspect_image(b)["Id"]
    final = shard_inspects(docker_client, group)
    assert list(final) == [f"{group}-0"] and final[f"{group}-0"]["Image"] == b_id
    assert ps_json(group)["status"] == "running 1/1"


def test_an_update_with_the_kernel_agent_stopped_changes_no_shard_and_says_why(group, images, docker_client):
    """Without its agent the kernel door cannot take a shard out: the update replaces nothing, says
    so in one line, and (the change's final repair having brought the agent back) works again."""
    a, b, _ = images
    run_kernel_group(group, a, 28408)
    before = {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()}
    docker_client.stop(f"{group}-lb", timeout=2)
    r = tesson_cmd("update", "-g", group, "--image", b, "--drain-timeout", "0", env=NO_GORB)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"stopped at {group}-0: kernel front door, remove backends {group}-0: kernel agent " \
        f"{group}-lb is not running" in err[0] and "no shard was replaced" in err[0], err
    assert {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()} == before
    assert docker_client.inspect_container(f"{group}-lb")["State"]["Running"]  # the final repair brought it back
    ok(tesson_cmd("update", "-g", group, "--image", b, "--drain-timeout", "0", env=NO_GORB))
    doc = ps_json(group)
    assert doc["image"] == b and doc["status"] == "running 2/2" and doc["frontend"]["held_out"] == [], doc


# -- the kernel door admits a shard once it listens ------------------------------------------------

LATE = 2.5  # seconds the late image sleeps before its server starts (no healthcheck)


@pytest.fixture(scope="session")
def late_image(docker_client, images):
    """The tesson image whose command starts ``LATE`` seconds after its container (no healthcheck)."""
    tag = "t14-test:late"
    line = f'ENTRYPOINT ["sh", "-c", "sleep {LATE}; exec tesson \\"$@\\"", "sh"]'
    for _ in docker_client.build(fileobj=io.BytesIO(f"FROM {images[0]}\n{line}\n".encode()), tag=tag, rm=True,
                                 network_mode="none", decode=True):
        pass
    docker_client.inspect_image(tag)
    yield tag
    _remove_images(docker_client, [tag])


def _accepts(addr: str, port: int = 8080) -> bool:
    import socket

    try:
        socket.create_connection((addr, port), timeout=0.3).close()
        return True
    except OSError:
        return False


def change_watching_admissions(*args: str) -> tuple[subprocess.CompletedProcess, float, list, list]:
    """A tesson command run while every address in the kernel door's map is checked, every ~50 ms, to
    accept a connection: (result, seconds it took, addresses found in the map not accepting (still
    in it after the try), the maps seen)."""
    group = args[args.index("-g") + 1]
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "tesson", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, **NO_GORB})
    deaf, maps = [], []
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        m = nft_backends(group) or []
        maps.append(m)
        deaf += [a for a in m if not _accepts(a) and a in (nft_backends(group) or [])]
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - began, deaf, maps


def test_an_update_and_a_scale_to_a_late_listener_through_the_kernel_door_drop_no_request(group, images, late_image,
                                                                                           docker_client):
    """Successors and new shards that run ``LATE`` s before they listen: each enters the map only once
    it accepts (the change waits for it), and wrk through the door meanwhile sees no error."""
    require(os.geteuid() == 0 and shutil.which("nft") is not None, "needs root and nft to read the kernel's map")
    a = images[0]
    port = 28410
    run_kernel_group(group, a, port)
    wrk = Wrk(port)
    try:
        upd, upd_took, upd_deaf, _ = change_watching_admissions("update", "-g", group, "--image", late_image,
                                                                "--drain-timeout", "1")
        ok(upd)
        assert f"replaced {group}-0" in upd.stdout and f"replaced {group}-1" in upd.stdout, upd.stdout
        up, up_took, up_deaf, _ = change_watching_admissions("scale", "-g", group, "-n", "3")
        ok(up)
        assert f"created {group}-2" in up.stdout, up.stdout
    finally:
        result = wrk.stop()
    assert result["requests"] > 500, result["text"]
    assert result["socket_errors"] == 0 and result["non2xx"] == 0, result["text"]
    assert upd_deaf == [] and up_deaf == [], (upd_deaf, up_deaf)  # never a closed port in the map
    # the change waited for each to listen: one shard at a time for the update
    assert upd_took > 2 * LATE and up_took > LATE, (upd_took, up_took)
    final = shard_states(docker_client, group)
    assert sorted(nft_backends(group)) == sorted(addr for _, _, addr in final.values()) and len(final) == 3
    fe = ps_json(group)["frontend"]
    assert fe["in_rotation"] == [f"{group}-{i}" for i in range(3)] and fe["not_listening"] == [], fe
    print(f"update of 2 shards took {upd_took:.1f}s, scale 2 -> 3 {up_took:.1f}s; wrk: {result['requests']} requests, "
          f"{result['socket_errors']} socket errors")


def _update_to_a_successor_the_door_never_takes(docker_client, group: str, a: str, tag: str, entrypoint: str,
                                                port: int) -> str:
    """Run a kernel-door group of ``a``, update it to ``tag`` (``a`` with ``entrypoint``), which the
    door never takes in: the update stops at shard 0 with one line (returned), and the previous
    version (the same containers, image ``a``) serves again, in the map."""
    line = f'ENTRYPOINT {entrypoint}'
    for _ in docker_client.build(fileobj=io.BytesIO(f"FROM {a}\n{line}\n".encode()), tag=tag, rm=True,
                                 network_mode="none", decode=True):
        pass
    try:
        run_kernel_group(group, a, port)
        before = {n: i["Id"] for n, i in shard_inspects(docker_client, group).items()}
        r = tesson_cmd("update", "-g", group, "--image", tag, "--drain-timeout", "0", env=NO_GORB, timeout=180)
        assert r.returncode == 1, r.stdout + r.stderr
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and f"stopped at {group}-0" in err[0] and "not taken into the front door" in err[0] \
            and "its previous version serves again" in err[0], err
        now = shard_inspects(docker_client, group)
        assert {n: i["Id"] for n, i in now.items()} == before  # the same containers, nothing of tag left
        assert all(i["State"]["Running"] and i["Config"]["Image"] == a for i in now.values()), now
        states = shard_states(docker_client, group)
        deadline = time.monotonic() + 30
        while sorted(nft_backends(group) or []) != sorted(addr for _, _, addr in states.values()):
            assert time.monotonic() < deadline, (nft_backends(group), states)
            time.sleep(0.2)
        return err[0]
    finally:
        _remove_images(docker_client, [tag])


def test_an_update_whose_successor_never_listens_puts_the_previous_version_back(group, images, docker_client):
    """A successor that runs but never listens is never taken into the kernel door: past the door's
    bound the update stops, and the previous version (the same container) serves again, in the map."""
    require(os.geteuid() == 0 and shutil.which("nft") is not None, "needs root and nft to read the kernel's map")
    err = _update_to_a_successor_the_door_never_takes(docker_client, group, images[0], "t14-test:deaf",
                                                      '["sh", "-c", "exec sleep 3600", "sh"]', 28411)
    assert "not listening" in err and "no shard was replaced" in err, err
    print(err)
    assert ps_json(group)["image"] == images[0]


def test_an_update_whose_successor_dies_before_the_door_takes_it_puts_the_previous_version_back(group, images,
                                                                                                docker_client):
    """A successor that passes the settle check, then exits before the kernel door took it in: the
    door's wait fails, and the previous version (the same container) serves again, in the map."""
    require(os.geteuid() == 0 and shutil.which("nft") is not None, "needs root and nft to read the kernel's map")
    _update_to_a_successor_the_door_never_takes(docker_client, group, images[0], "t14-test:brief",
                                                '["sh", "-c", "sleep 2; exit 1", "sh"]', 28412)
