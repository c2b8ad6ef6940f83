"""A shared group re-pinned by the pool, then repaired, scaled and given 'auto' limits, on the real
daemon (groups named t12r-*; this machine has CPUs 0 and 1). Pinning is read from inside the shards
(Cpus_allowed_list of their CGI), limits from the container's HostConfig and from its cgroup.

Only groups this tesson made take part in the pool, so other helpers' groups are left alone.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import group_containers, pins_inside, tesson_cmd

pytestmark = pytest.mark.docker


def _run(group, *opts, image):
    r = tesson_cmd("run", "-g", group, "--lb", "none", "-p", "8080", *opts, image)
    assert r.returncode == 0, r.stderr
    return r


def _cgroup(client, name, *paths):
    """The first of ``paths`` (cgroup v1, then v2) the container can read, as an int."""
    for path in paths:
        r = client.exec_create(name, ["cat", path])
        out = client.exec_start(r["Id"]).decode().strip()
        if client.exec_inspect(r["Id"])["ExitCode"] == 0:
            return int(out) if out != "max" else -1
    raise AssertionError(f"none of {paths} readable in {name}")


def _limits_inside(client, name):
    return {
        "Memory": _cgroup(client, name, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
        "MemoryReservation": _cgroup(client, name, "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
                                     "/sys/fs/cgroup/memory.low"),
        "CpuShares": _cgroup(client, name, "/sys/fs/cgroup/cpu/cpu.shares", "/sys/fs/cgroup/cpu.weight"),
    }


def test_repair_recreates_a_repinned_shard_where_the_pool_has_it_not_on_the_exclusive_cpu(docker_client, shard_image, cleanup):
    pool, ex = "t12r-pool", "t12r-excl"
    cleanup.extend([pool, ex])
    _run(pool, "-u", "pu", image=shard_image)
    assert [pins_inside(docker_client, f"{pool}-{i}") for i in (0, 1)] == ["0", "1"]
    _run(ex, "--exclusive", "-n", "1", "--cpus", "1", image=shard_image)
    assert pins_inside(docker_client, f"{ex}-0") == "1"
    assert [pins_inside(docker_client, f"{pool}-{i}") for i in (0, 1)] == ["0", "0"]  # re-pinned live
    labels = docker_client.inspect_container(f"{pool}-1")["Config"]["Labels"]
    assert labels["io.tesson.cpus"] == "1"  # the labels still say where it started

    # the re-pinned shard is removed; repair makes it again where the pool has it now
    docker_client.remove_container(f"{pool}-1", force=True, v=True)
    r = tesson_cmd("repair", "-g", pool)
    assert r.returncode == 0, r.stderr
    assert f"recreated {pool}-1 (cpus 0)" in r.stdout, r.stdout
    assert pins_inside(docker_client, f"{pool}-1") == "0"
    assert docker_client.containers(all=True, filters={"name": "^/tesson-lock$"}) == []
    # a repair with nothing to do leaves both where they are
    r = tesson_cmd("repair", "-g", pool)
    assert r.returncode == 0 and "nothing to repair" in r.stdout, r.stdout + r.stderr

    # scale over the same pool: the new shard too stays off the exclusive CPU
    r = tesson_cmd("scale", "-g", pool, "-n", "3", "--drain-timeout", "0")
    assert r.returncode == 0, r.stderr
    assert [pins_inside(docker_client, f"{pool}-{i}") for i in (0, 1, 2)] == ["0", "0", "0"]
    assert pins_inside(docker_client, f"{ex}-0") == "1"

    # the exclusive group gone, the pool is the whole machine again: the three spread over both CPUs
    r = tesson_cmd("stop", "-g", ex, "--purge")
    assert r.returncode == 0, r.stderr
    pins = sorted(pins_inside(docker_client, f"{pool}-{i}") for i in (0, 1, 2))
    assert set(pins) == {"0", "1"}, pins


def test_auto_limits_follow_a_live_repin_and_come_back(docker_client, shard_image, cleanup):
    pool, ex = "t12r-quota", "t12r-qex"
    cleanup.extend([pool, ex])
    _run(pool, "-u", "package", "--memory", "auto", "--memory-reservation", "auto", "--cpu-shares", "auto",
         image=shard_image)
    name = f"{pool}-0"
    made = docker_client.inspect_container(name)
    host = made["HostConfig"]
    assert host["CpusetCpus"] == "0-1" and host["CpuShares"] == 2048
    big = host["Memory"]
    assert big > 0 and host["MemoryReservation"] == big and host["MemorySwap"] == 2 * big
    assert json.loads(made["Config"]["Labels"]["io.tesson.limits.auto"]) == ["Memory", "MemoryReservation", "CpuShares"]
    inside = _limits_inside(docker_client, name)
    assert inside["CpuShares"] == 2048 and inside["Memory"] == big

    _run(ex, "--exclusive", "-n", "1", "--cpus", "0", image=shard_image)
    now = docker_client.inspect_container(name)
    assert now["Id"] == made["Id"] and now["State"]["StartedAt"] == made["State"]["StartedAt"]
    host = now["HostConfig"]
    assert host["CpusetCpus"] == "1" and host["CpuShares"] == 1024
    small = host["Memory"]
    assert 0 < small < big and abs(2 * small - big) <= 2 << 20  # half the node's share, MiB-rounded
    assert host["MemoryReservation"] == small and host["MemorySwap"] == 2 * small
    assert _limits_inside(docker_client, name) == {"Memory": small, "MemoryReservation": small, "CpuShares": 1024}
    assert pins_inside(docker_client, name) == "1"
    # a repair finds it where it should be, with the limits it should have: nothing to do
    r = tesson_cmd("repair", "-g", pool)
    assert r.returncode == 0 and "nothing to repair" in r.stdout, r.stdout + r.stderr

    # given back: the limit grows past the swap limit it had, so both are raised in the same update
    r = tesson_cmd("stop", "-g", ex, "--purge")
    assert r.returncode == 0, r.stderr
    back = docker_client.inspect_container(name)
    assert back["Id"] == made["Id"] and back["State"]["StartedAt"] == made["State"]["StartedAt"]
    host = back["HostConfig"]
    assert (host["CpusetCpus"], host["Memory"], host["MemoryReservation"], host["MemorySwap"], host["CpuShares"]) == (
        "0-1", big, big, 2 * big, 2048)
    assert _limits_inside(docker_client, name) == {"Memory": big, "MemoryReservation": big, "CpuShares": 2048}
    assert pins_inside(docker_client, name) == "0-1"


def test_repair_moves_a_shard_back_with_its_limits_and_scale_makes_new_ones_with_theirs(docker_client, shard_image, cleanup):
    """The exclusive group removed by hand (docker rm, not stop --purge) gives nothing back: repair finds
    the shard on CPU 1 with one CPU's limits and re-pins it onto both CPUs with both CPUs' limits."""
    pool, ex = "t12r-back", "t12r-bex"
    cleanup.extend([pool, ex])
    _run(pool, "-u", "package", "--memory", "auto", "--cpu-shares", "auto", image=shard_image)
    name = f"{pool}-0"
    big = docker_client.inspect_container(name)["HostConfig"]["Memory"]
    _run(ex, "--exclusive", "-n", "1", "--cpus", "0", image=shard_image)
    small = docker_client.inspect_container(name)["HostConfig"]["Memory"]
    assert small < big

    # scale while the exclusive group holds CPU 0: the new shard is made on CPU 1 with one CPU's limits
    r = tesson_cmd("scale", "-g", pool, "-n", "2", "--drain-timeout", "0")
    assert r.returncode == 0, r.stderr
    new = docker_client.inspect_container(f"{pool}-1")["HostConfig"]
    assert (new["CpusetCpus"], new["Memory"], new["CpuShares"]) == ("1", small, 1024)
    assert pins_inside(docker_client, f"{pool}-1") == "1"
    r = tesson_cmd("scale", "-g", pool, "-n", "1", "--drain-timeout", "0")
    assert r.returncode == 0, r.stderr

    for c in group_containers(docker_client, ex):
        docker_client.remove_container(c["Id"], force=True, v=True)
    made = docker_client.inspect_container(name)
    r = tesson_cmd("repair", "-g", pool)
    assert r.returncode == 0, r.stderr
    assert f"re-pinned {name} live (cpus 1 -> 0-1)" in r.stdout, r.stdout
    now = docker_client.inspect_container(name)
    assert now["Id"] == made["Id"] and now["State"]["StartedAt"] == made["State"]["StartedAt"]
    host = now["HostConfig"]
    assert (host["CpusetCpus"], host["Memory"], host["MemorySwap"], host["CpuShares"]) == ("0-1", big, 2 * big, 2048)
    assert _limits_inside(docker_client, name)["Memory"] == big and pins_inside(docker_client, name) == "0-1"


def test_scale_of_an_exclusive_group_that_would_starve_a_shared_one_is_refused(docker_client, shard_image, cleanup):
    pool, ex = "t12r-starve", "t12r-sex"
    cleanup.extend([pool, ex])
    _run(pool, "-u", "pu", "--no-isolated", image=shard_image)
    labels = docker_client.inspect_container(f"{pool}-0")["Config"]["Labels"]
    assert labels["io.tesson.no-isolated"] == "1"  # recorded: every later plan of the group leaves them out
    _run(ex, "--exclusive", "-n", "1", image=shard_image)
    held = pins_inside(docker_client, f"{ex}-0")
    before = {c["Id"] for c in group_containers(docker_client, ex)}
    r = tesson_cmd("scale", "-g", ex, "-n", "2", "--drain-timeout", "0")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert f"would leave shared group {pool} without any CPU (nothing was changed)" in lines[0], lines[0]
    assert {c["Id"] for c in group_containers(docker_client, ex)} == before
    assert pins_inside(docker_client, f"{ex}-0") == held
    assert {pins_inside(docker_client, f"{pool}-{i}") for i in (0, 1)} == {str(1 - int(held))}
    assert docker_client.containers(all=True, filters={"name": f"^/({ex}-lock|tesson-lock)$"}) == []
    # the shared group's own scale keeps --no-isolated in its new spec record
    r = tesson_cmd("scale", "-g", pool, "-n", "3", "--drain-timeout", "0")
    assert r.returncode == 0, r.stderr
    spec = [c for c in group_containers(docker_client, pool) if c["Labels"].get("io.tesson.role") == "spec"]
    assert len(spec) == 1 and spec[0]["Labels"]["io.tesson.no-isolated"] == "1" and spec[0]["Labels"]["io.tesson.size"] == "3"
