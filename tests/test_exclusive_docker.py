"""run --exclusive, the shared pool's live re-pins, quotas and the daemon lock on the real daemon
(groups named t12-*). Pinning is read from inside the shards (Cpus_allowed_list of their CGI).

Only groups this tesson made (they carry io.tesson.machine) take part in the pool, so other helpers'
groups on the shared daemon are neither re-pinned nor in the way.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tesson import daemon_lock
from tests.conftest import ROOT, group_containers, pins_inside, tesson_cmd

pytestmark = pytest.mark.docker


def _run(group, *opts, image):
    return tesson_cmd("run", "-g", group, "--lb", "none", "-p", "8080", *opts, image)


def _one_line(r):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_two_concurrent_exclusive_runs_get_cpu0_and_cpu1_a_third_is_refused(docker_client, shard_image, cleanup):
    a, b, c = "t12-ex-a", "t12-ex-b", "t12-ex-c"
    cleanup.extend([a, b, c])
    procs = [subprocess.Popen([sys.executable, "-m", "tesson", "run", "-g", g, "--exclusive", "-n", "1", "--lb", "none",
                               "-p", "8080", shard_image], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for g in (a, b)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    got = sorted(pins_inside(docker_client, f"{g}-0") for g in (a, b))
    assert got == ["0", "1"]
    r = _run(c, "--exclusive", "-n", "1", image=shard_image)
    assert r.returncode == 1
    line = _one_line(r)
    assert "no free core unit is left" in line and f"{a} holds" in line and f"{b} holds" in line, line
    assert group_containers(docker_client, c) == [] and docker_client.containers(all=True, filters={"name": "^/tesson-lock$"}) == []
    # the map: both CPUs marked by their exclusive holder
    r = tesson_cmd("topology", "--groups", "--format", "json")
    assert r.returncode == 0, r.stderr
    holders = {x["cpu"]: x["holders"] for x in json.loads(r.stdout)["cpus"]}
    exclusive = sorted((h["group"], cpu) for cpu, hs in holders.items() for h in hs if h["kind"] == "exclusive")
    assert sorted(g for g, _ in exclusive) == [a, b] and sorted(cpu for _, cpu in exclusive) == [0, 1]
    text = tesson_cmd("topology", "--groups").stdout
    assert f"<- {a}-0 (exclusive)" in text and f"<- {b}-0 (exclusive)" in text


def test_exclusive_repins_shared_live_and_gives_back_on_purge(docker_client, shard_image, cleanup):
    shared, ex = "t12-pool", "t12-excl"
    cleanup.extend([shared, ex])
    r = _run(shared, "-u", "pu", image=shard_image)
    assert r.returncode == 0, r.stderr
    before = {i: docker_client.inspect_container(f"{shared}-{i}") for i in (0, 1)}
    assert [pins_inside(docker_client, f"{shared}-{i}") for i in (0, 1)] == ["0", "1"]

    dry = tesson_cmd("run", "--dry-run", "--format", "json", "-g", ex, "--exclusive", "-n", "1", "img")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["exclusive"] == "packed" and [s["cpus"] for s in plan["shards"]] == [[0]]
    assert plan["repins"] == [{"group": shared, "shard": 0, "from": [0], "to": [1], "mems": [0]}]

    r = _run(ex, "--exclusive", "-n", "1", "--memory", "auto", "--cpu-shares", "auto", image=shard_image)
    assert r.returncode == 0, r.stderr
    assert pins_inside(docker_client, f"{ex}-0") == "0"
    for i in (0, 1):
        now = docker_client.inspect_container(f"{shared}-{i}")
        assert now["Id"] == before[i]["Id"] and now["State"]["StartedAt"] == before[i]["State"]["StartedAt"]
        assert now["HostConfig"]["CpusetCpus"] == "1" and pins_inside(docker_client, f"{shared}-{i}") == "1"
    host = docker_client.inspect_container(f"{ex}-0")["HostConfig"]
    assert host["CpuShares"] == 1024 and host["Memory"] > 0
    ps = json.loads(tesson_cmd("ps", "-g", ex, "--json").stdout)[0]
    assert ps["exclusive"] == "packed" and ps["shards"][0]["limits"] == {"Memory": host["Memory"], "CpuShares": 1024}
    assert "LIMITS" in tesson_cmd("ps", "-g", ex).stdout
    # ps of the shared group says where its shards are now (moved live: their labels still say 0, 1)
    for args in (("-g", shared), ()):
        docs = {d["group"]: d for d in json.loads(tesson_cmd("ps", *args, "--json").stdout)}
        assert [s["cpus"] for s in docs[shared]["shards"]] == [[1], [1]], args

    # taking the last CPU would leave the shared group none: refused, nothing moved or made
    r = _run("t12-greedy", "--exclusive", image=shard_image)
    assert r.returncode == 1 and f"would leave shared group {shared} without any CPU" in _one_line(r)
    assert group_containers(docker_client, "t12-greedy") == []
    assert pins_inside(docker_client, f"{shared}-0") == "1"

    r = tesson_cmd("stop", "-g", ex, "--purge")
    assert r.returncode == 0, r.stderr
    assert "re-pinned" in r.stdout
    for i in (0, 1):
        now = docker_client.inspect_container(f"{shared}-{i}")
        assert now["Id"] == before[i]["Id"] and now["State"]["StartedAt"] == before[i]["State"]["StartedAt"]
        assert pins_inside(docker_client, f"{shared}-{i}") == str(i)
    assert [s["cpus"] for s in json.loads(tesson_cmd("ps", "-g", shared, "--json").stdout)[0]["shards"]] == [[0], [1]]


def test_cpus_restricts_a_shared_group(docker_client, shard_image, cleanup):
    g = "t12-cpus"
    cleanup.append(g)
    r = _run(g, "-u", "pu", "--cpus", "1", image=shard_image)
    assert r.returncode == 0, r.stderr
    assert pins_inside(docker_client, f"{g}-0") == "1" and len(group_containers(docker_client, g)) == 1
    bad = tesson_cmd("run", "--dry-run", "--cpus", "7", "img")
    assert bad.returncode == 1 and "CPU 7 is not allowed" in _one_line(bad)
    assert tesson_cmd("run", "--dry-run", "--cpus", "3-1", "img").returncode == 2


def test_lock_waits_times_out_and_takes_over_a_dead_holder(docker_client, shard_image, cleanup):
    g = "t12-lock"
    cleanup.append(g)
    alive = f"{daemon_lock.socket.gethostname()} 1 {daemon_lock._start_time(1)}"  # pid 1: alive for sure
    cid = docker_client.create_container(shard_image, name=daemon_lock.NAME, command=["x"],
                                         labels={"io.tesson.role": "lock", "io.tesson.lock.owner": alive})["Id"]
    try:
        r = tesson_cmd("run", "-g", g, "--lb", "none", shard_image, env={"TESSON_LOCK_WAIT": "1"})
        assert r.returncode == 1 and "holds the daemon's lock" in _one_line(r) and "docker rm tesson-lock" in r.stderr
        assert group_containers(docker_client, g) == []
        # a holder that is gone (a pid that exited) is taken over at once
        docker_client.remove_container(cid, force=True)
        p = subprocess.Popen(["true"])
        p.wait()
        cid = docker_client.create_container(shard_image, name=daemon_lock.NAME, command=["x"], labels={
            "io.tesson.role": "lock", "io.tesson.lock.owner": f"{daemon_lock.socket.gethostname()} {p.pid} 1.00"})["Id"]
        r = tesson_cmd("run", "-g", g, "--lb", "none", shard_image, env={"TESSON_LOCK_WAIT": "5"})
        assert r.returncode == 0, r.stderr
        assert docker_client.containers(all=True, filters={"name": "^/tesson-lock$"}) == []
    finally:
        try:
            docker_client.remove_container(cid, force=True)
        except Exception:
            pass
