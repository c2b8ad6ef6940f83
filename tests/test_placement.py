"""Placement against hwloc-distrib, shard by shard and in order, on every sysfs dump in tests/fixtures."""

from __future__ import annotations

import json
import os

import pytest

from tesson import placement, topology
from tesson.errors import UsageError
from tesson.topology import bits
from tests import dumps, hwloc_ref, sysfs_builder
from tests.conftest import require, tesson_cmd

HWLOC_UNITS = ("pu", "core", "l3", "package")


@pytest.fixture
def dump(request, tmp_path_factory):
    return dumps.unpack(request.param, tmp_path_factory)


def needs_hwloc():
    require(hwloc_ref.available(), "hwloc is not installed (apt-get install hwloc)")


def sizes(k: int) -> list[int]:
    """N in {1, 2, 3, 5, half the units, all units, 2 x units + 1}."""
    return sorted({1, 2, 3, 5, max(1, k // 2), max(1, k), 2 * k + 1})


def unit_count(topo, unit: str) -> int:
    try:
        return placement.default_size(topo, unit)
    except UsageError:
        return 0


@pytest.mark.parametrize("unit", HWLOC_UNITS)
@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_plan_equals_hwloc_distrib(dump, unit):
    needs_hwloc()
    topo = topology.read(str(dump))
    k = unit_count(topo, unit)
    for n in sizes(k):
        ref = hwloc_ref.distrib(dump, unit, n)
        if ref is None:  # hwloc-distrib refuses a type the machine lacks: so does tesson
            assert k == 0
            with pytest.raises(UsageError):
                placement.plan(topo, unit, n)
            continue
        shards = placement.plan(topo, unit, n)
        assert [list(s.cpus) for s in shards] == ref, (unit, n)
        assert [s.index for s in shards] == list(range(n))
        for s in shards:
            assert list(s.mems) == topo.mems_for(s.cpus)


@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_default_size_counts_units_like_hwloc(dump):
    needs_hwloc()
    topo = topology.read(str(dump))
    ref = hwloc_ref.summary(hwloc_ref.lstopo(dump))
    assert placement.default_size(topo, "pu") == len(ref["pus"])
    assert placement.default_size(topo, "core") == len(ref["cores"])
    assert placement.default_size(topo, "package") == len(ref["packages"])
    node_sets = {tuple(n["cpus"]) for n in ref["numa_nodes"] if n["cpus"]}
    assert placement.default_size(topo, "numa") == len(node_sets)  # no memory-only node in the dumps
    assert unit_count(topo, "l3") == len(ref["l3"])
    assert len(placement.plan(topo)) == len(ref["cores"])  # the default: one shard per core


@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_numa_plan_is_whole_nodes(dump):
    """numa: the hwloc_distrib walk over hwloc's own tree, stopping at NUMA nodes; whole nodes only."""
    needs_hwloc()
    topo = topology.read(str(dump))
    tree = hwloc_ref.lstopo(dump)
    nodes = [set(bits(n.own)) for n in topo.numa_nodes if n.own]
    nodeless = set(topo.pus) - set().union(*nodes)  # CPUs whose NUMA node is not allowed / not shown
    for n in sizes(len(nodes)):
        shards = placement.plan(topo, "numa", n)
        assert [list(s.cpus) for s in shards] == hwloc_ref.distrib_numa(tree, n), n
        for s in shards:
            cpus = set(s.cpus)
            inside = [node for node in nodes if node & cpus]
            assert set().union(*inside) == cpus - nodeless, "a shard must hold whole NUMA nodes"
            assert list(s.mems) == sorted(node.id for node in topo.numa_nodes if set(node.cpus) & cpus)
        assert set().union(*(set(s.cpus) for s in shards)) == set(topo.pus)


BUILT = {
    "cgroup-v2": dict(cgroup="v2", cgroup_cpus=[1, 2, 3, 5, 12, 13]),
    "cgroup-v1": dict(cgroup="v1", cgroup_cpus=[0, 1, 2, 9, 10]),
    "old-cpuset-fs": dict(cgroup="cpuset", cgroup_cpus=[0, 3, 5, 6]),
    "no-cache-files": dict(caches=False),
    "sub-numa-clustering": dict(packages=2, cores=6, threads=2, numa_per_package=2),
    "offline-cpus": dict(packages=2, cores=4, offline=[0, 9, 10]),
    # SLIT distances pair the packages: hwloc adds a Group per pair (distance grouping)
    "numa-distance-pairs": dict(packages=4, cores=2, threads=2, distances=[
        [10, 16, 32, 32], [16, 10, 32, 32], [32, 32, 10, 16], [32, 32, 16, 10]]),
    "numa-distance-uneven": dict(packages=5, cores=3, threads=1, distances=[
        [10, 12, 20, 20, 20], [12, 10, 20, 20, 20], [20, 20, 10, 12, 12], [20, 20, 12, 10, 12],
        [20, 20, 12, 12, 10]]),
    # NVIDIA GPUs' memory as memory-only NUMA nodes near packages 0 and 2: hwloc hides them, so
    # they neither group packages by distance nor join a shard's mems
    "nvidia-gpu-memory-nodes": dict(packages=4, cores=2, threads=1, cpuless_nodes=2, nvidia_gpu_nodes={4: 0, 5: 2},
                                    distances=[[10, 16, 32, 32, 12, 40], [16, 10, 32, 32, 40, 40],
                                               [32, 32, 10, 16, 40, 12], [32, 32, 16, 10, 40, 40],
                                               [12, 40, 40, 40, 10, 50], [40, 40, 12, 40, 50, 10]]),
    # cores that list different caches (an L2 shared by the last cores only, L1s on some cores)
    "l2-shared-by-the-last-cores-only": dict(packages=1, cores=6, caches_of=sysfs_builder.uneven_caches(l2_shared=(3, 4, 5))),
    "l2-shared-by-middle-cores-and-l1-on-some": dict(
        packages=2, cores=5, threads=1, caches_of=sysfs_builder.uneven_caches(l2_shared=(2, 3, 4), l1_on=(0, 4))),
    # a memory-only node as close to packages 0 and 1: hwloc groups those two packages
    "memory-only-node-between-packages": dict(
        packages=3, cpuless_nodes=1,
        distances=[[10, 20, 30, 15], [20, 10, 30, 15], [30, 30, 10, 40], [15, 15, 40, 10]]),
}


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_built_trees_equal_hwloc_distrib(tmp_path, kind):
    needs_hwloc()
    root = sysfs_builder.build(tmp_path, **BUILT[kind])
    topo = topology.read(str(root))
    for unit in HWLOC_UNITS:
        k = unit_count(topo, unit)
        for n in sizes(k):
            ref = hwloc_ref.distrib(root, unit, n)
            if ref is None:
                assert k == 0 and unit == "l3"
                continue
            assert [list(s.cpus) for s in placement.plan(topo, unit, n)] == ref, (unit, n)
    tree = hwloc_ref.lstopo(root)
    for n in sizes(placement.default_size(topo, "numa")):
        shards = placement.plan(topo, "numa", n)
        assert [list(s.cpus) for s in shards] == hwloc_ref.distrib_numa(tree, n), n
        for s in shards:
            assert list(s.mems) == sorted(x.os_index for x in tree.walk()
                                          if x.type == "NUMANode" and set(x.cpus) & set(s.cpus))


S390 = {
    # 8 packages in 4 books in 2 drawers: hwloc Groups that split the machine
    "books-drawers": dict(packages=8, cores=2, threads=1, books=2, drawers=2),
    "books-uneven": dict(packages=3, cores=2, threads=2, books=2),
}


@pytest.mark.parametrize("kind", sorted(S390))
def test_s390_books_and_drawers(tmp_path, kind):
    """An s390 dump (its proc/hwloc-nofile-info says so): books and drawers are levels of the walk,
    as hwloc 2.9 shows them on the s390 itself. The reference is hwloc 2.9 without HWLOC_THISSYSTEM,
    so that it takes the dump's architecture: with it, hwloc takes this host's and, on a host that is
    not an s390, shows no books (checked below, so a change of hwloc's behaviour shows here)."""
    needs_hwloc()
    root = sysfs_builder.build(tmp_path, **S390[kind])
    topo = topology.read(str(root))
    assert {"book"} <= {o.kind for o in topo.objects}
    if not os.uname().machine.startswith("s390"):
        assert hwloc_ref.summary(hwloc_ref.lstopo(root)) == hwloc_ref.summary(hwloc_ref.lstopo(root, thissystem=False))
        assert "Book" not in "\n".join(hwloc_ref.lstopo_console(root))
        assert "Book" in "\n".join(hwloc_ref.lstopo_console(root, thissystem=False))
    assert {k: v for k, v in topo.to_json().items() if k != "devices"} == hwloc_ref.summary(hwloc_ref.lstopo(root, thissystem=False))
    for unit in HWLOC_UNITS:
        for n in sizes(unit_count(topo, unit)):
            ref = hwloc_ref.distrib(root, unit, n, thissystem=False)
            assert [list(s.cpus) for s in placement.plan(topo, unit, n)] == ref, (unit, n)


def test_distance_groups_are_levels(tmp_path):
    root = sysfs_builder.build(tmp_path, **BUILT["numa-distance-pairs"])
    topo = topology.read(str(root))
    groups = [o.cpus for o in topo.objects if o.kind == "distance"]
    assert groups == [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]]


def test_memory_only_node_is_not_a_unit(tmp_path):
    """A memory-only node between packages 0 and 1 has their CPUs (hwloc's locality), but the numa
    unit still splits by the nodes with CPUs; its memory goes with the shards that are close to it."""
    root = sysfs_builder.build(tmp_path, **BUILT["memory-only-node-between-packages"])
    topo = topology.read(str(root))
    assert [n.id for n in topo.numa_nodes] == [0, 1, 2, 3]
    assert topo.numa_nodes[3].cpus == [0, 1, 2, 3, 6, 7, 8, 9]
    assert placement.default_size(topo, "numa") == 3
    shards = placement.plan(topo, "numa")
    assert [list(s.cpus) for s in shards] == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]]
    assert [list(s.mems) for s in shards] == [[0, 3], [1, 3], [2]]


def test_sub_numa_clustering_numa_unit(tmp_path):
    """Two NUMA nodes per package: numa shards split packages; mems follow."""
    root = sysfs_builder.build(tmp_path, packages=2, cores=4, threads=1, numa_per_package=2)
    topo = topology.read(str(root))
    shards = placement.plan(topo, "node")
    assert [list(s.cpus) for s in shards] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [list(s.mems) for s in shards] == [[0], [1], [2], [3]]
    assert [list(s.mems) for s in placement.plan(topo, "socket")] == [[0, 1], [2, 3]]


def test_units_and_aliases():
    assert placement.canonical_unit("node") == "numa"
    assert placement.canonical_unit("socket") == "package"
    assert placement.canonical_unit("CORE") == "core"
    for u in ("pu", "core", "l3", "numa", "package"):
        assert placement.canonical_unit(u) == u
    with pytest.raises(UsageError):
        placement.canonical_unit("rack")


def test_bad_sizes(tmp_path):
    topo = topology.read(str(sysfs_builder.build(tmp_path)))
    for bad in (0, -3):
        with pytest.raises(UsageError):
            placement.plan(topo, "core", bad)


def test_more_shards_than_pus_reuse_cpus(tmp_path):
    topo = topology.read(str(sysfs_builder.build(tmp_path, packages=1, cores=2, threads=1)))
    shards = placement.plan(topo, "core", 5)
    assert len(shards) == 5 and all(len(s.cpus) == 1 for s in shards)


# ---- the CLI, as a user runs it ------------------------------------------------------------------


@pytest.mark.parametrize("dump", [n for n in dumps.NAMES if n.startswith(("128arm", "32amd64", "20em64t"))],
                         indirect=True)
def test_cli_dry_run_json_equals_hwloc_distrib(dump):
    needs_hwloc()
    topo = topology.read(str(dump))
    for unit in HWLOC_UNITS:
        k = unit_count(topo, unit)
        for n in sorted({1, 3, max(1, k), 2 * k + 1}):
            r = tesson_cmd("--fsroot", str(dump), "run", "--dry-run", "-u", unit, "-n", str(n),
                           "--format", "json", "registry:5000/org/web:1.2")
            ref = hwloc_ref.distrib(dump, unit, n)
            if ref is None:
                assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
                continue
            assert r.returncode == 0, r.stderr
            doc = json.loads(r.stdout)
            assert doc["group"] == "web-1.2" and doc["image"] == "registry:5000/org/web:1.2"
            assert doc["unit"] == unit
            assert [s["cpus"] for s in doc["shards"]] == ref
            assert [s["index"] for s in doc["shards"]] == list(range(n))
            assert [s["mems"] for s in doc["shards"]] == [topo.mems_for(s["cpus"]) for s in doc["shards"]]


def test_cli_dry_run_default_and_aliases(tmp_path):
    root = str(sysfs_builder.build(tmp_path, packages=2, cores=2, threads=2))
    r = tesson_cmd("--fsroot", root, "run", "--dry-run", "--format", "json", "app")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["unit"] == "core" and [s["cpus"] for s in doc["shards"]] == [[0, 4], [1, 5], [2, 6], [3, 7]]
    # the layout: a key per line, a shard per line (tesson.commands.run.plan_json)
    lines = r.stdout.splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and '  "unit": "core",' in lines
    assert [json.loads(x.strip().rstrip(",")) for x in lines if x.startswith("    {")] == doc["shards"]
    r = tesson_cmd("--fsroot", root, "run", "--dry-run", "-u", "socket", "--format", "json", "app")
    doc = json.loads(r.stdout)
    assert doc["unit"] == "package" and [s["mems"] for s in doc["shards"]] == [[0], [1]]
    r = tesson_cmd("--fsroot", root, "run", "--dry-run", "-u", "node", "-g", "g1", "app")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "Group: g1 [app] unit=numa size=2"
    assert r.stdout.splitlines()[2].split() == ["0", "g1-0", "0-1,4-5", "0"]


def test_cli_l3_on_machine_without_l3(tmp_path):
    root = str(sysfs_builder.build(tmp_path, caches=False))
    r = tesson_cmd("--fsroot", root, "run", "--dry-run", "-u", "l3", "app")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "l3" in r.stderr


def test_shard_is_a_frozen_record():
    s = placement.Shard(index=1, cpus=(0, 4), mems=(0,))
    assert s == placement.Shard(1, [0, 4], [0]) and hash(s) == hash(placement.Shard(1, (0, 4), (0,)))
    assert s != placement.Shard(2, (0, 4), (0,))
    assert (s.index, s.cpus, s.mems) == (1, (0, 4), (0,))
    with pytest.raises(AttributeError):
        s.cpus = (1,)
    assert repr(s) == "Shard(index=1, cpus=(0, 4), mems=(0,))"


def test_dry_run_imports_nothing_heavy(tmp_path):
    """The dry-run path stays light: no docker, requests or structlog is imported."""
    import subprocess
    import sys

    root = str(sysfs_builder.build(tmp_path))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "tesson", "--fsroot", root, "run", "--dry-run",
                        "--format", "json", "img"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "tesson.topology" in imported and "tesson.placement" in imported
    heavy = {m for m in imported if m.split(".")[0] in ("docker", "requests", "structlog", "urllib3")}
    assert not heavy, sorted(heavy)
