"""Exclusive packing, the shared pool, re-pins, quotas and the lock's rules, on the sysfs dumps (pure).

Shared groups' plans with CPUs held by exclusive groups are checked against ``hwloc-distrib
--restrict POOL``; exclusive ones against the packing rule (tesson.allocation), whose two claims
are recomputed here independently: every unit whole, free and inside --cpus, and the fewest
packages (then the fewest NUMA nodes among them) that can hold N free units.
"""

from __future__ import annotations

import pytest

from tesson import allocation, holdings, placement, quotas, sharing, topology
from tesson.cpulist import bits, mask_of
from tesson.errors import TessonError, UsageError
from tests import dumps, hwloc_ref
from tests.conftest import require
from tests.test_placement import sizes

UNITS = ("pu", "core", "l3", "numa", "package")


@pytest.fixture
def dump(request, tmp_path_factory):
    return dumps.unpack(request.param, tmp_path_factory)


def _claim(name, shards, exclusive="packed", unit="core", restrict=None):
    return holdings.Claim(name, exclusive, unit, restrict,
                          [placement.Shard(i, tuple(c), tuple(m)) for i, (c, m) in enumerate(shards)])


def _held_by_others(topo, unit="core"):
    """An exclusive group holding the first unit and the fourth (when there is one) of ``unit``."""
    units = placement.units_of(topo, unit)
    picked = [units[0]] + ([units[3]] if len(units) > 3 else [])
    return _claim("other", [(bits(u), topo.mems_for(u)) for u in picked], unit=unit)


def _min_objects(counts, n):
    """The fewest objects whose free units add up to n (largest first), or None."""
    total = 0
    for i, c in enumerate(sorted(counts, reverse=True), 1):
        total += c
        if total >= n:
            return i
    return None


def _span(objs, chosen):
    return sum(1 for o in objs if o & chosen)


def check_packing(topo, unit, n, free, restrict=None):
    shards = allocation.pack(topo, unit, n, free, restrict=restrict)
    units = placement.units_of(topo, unit)
    inside = free if restrict is None else free & restrict
    chosen = 0
    assert len(shards) == n and [s.index for s in shards] == list(range(n))
    for s in shards:
        m = mask_of(s.cpus)
        assert m in units, f"{s.cpus} is not a whole {unit}"
        assert m & inside == m, f"{s.cpus} not free / not inside --cpus"
        assert not m & chosen
        chosen |= m
    free_units = [u for u in units if u & inside == u]
    # fewest packages
    pkgs = placement.units_of(topo, "package") if unit != "package" else []
    if pkgs and all(any(u & p == u for p in pkgs) for u in free_units):
        per_pkg = [sum(1 for u in free_units if u & p == u) for p in pkgs]
        assert _span(pkgs, chosen) == _min_objects(per_pkg, n), (unit, n, "packages")
        # fewest NUMA nodes among the chosen packages' free units
        nodes = [x.own for x in topo.numa_nodes if x.own]
        if unit not in ("numa",) and all(any(u & x == u for x in nodes) for u in free_units):
            in_pkgs = [u for u in free_units if any(u & p == u and p & chosen for p in pkgs)]
            per_node = [sum(1 for u in in_pkgs if u & x == u) for x in nodes]
            assert _span(nodes, chosen) == _min_objects(per_node, n), (unit, n, "NUMA nodes")
    return shards


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_exclusive_packing_rule_on_dumps(dump, unit):
    topo = topology.read(str(dump))
    if not placement.units_of(topo, unit):
        with pytest.raises(TessonError):
            allocation.pack(topo, unit, None, topo.cpuset)
        return
    other = _held_by_others(topo, unit)
    free = topo.cpuset & ~other.cpuset
    k = len(allocation.free_units(topo, unit, free)[0])
    for n in sorted({1, 2, 3, max(1, k // 2), max(1, k - 1), k} - {0}):
        if n <= k:
            check_packing(topo, unit, n, free)
    with pytest.raises(allocation.NoFreeUnits):
        allocation.pack(topo, unit, k + 1, free)
    if k:
        assert len(allocation.pack(topo, unit, None, free)) == k  # default -n: every free unit
    else:
        with pytest.raises(allocation.NoFreeUnits):
            allocation.pack(topo, unit, None, free)


@pytest.mark.parametrize("dump", ["16em64t-4s2c2t", "48amd64-4pa2n6c-sparse", "128arm-2pa2n8cluster4co"], indirect=True)
def test_exclusive_within_cpus_takes_only_whole_units_inside(dump):
    topo = topology.read(str(dump))
    pus = topo.pus
    restrict = mask_of(pus[: len(pus) // 2 + 1])
    for unit in ("pu", "core"):
        k = len(allocation.free_units(topo, unit, topo.cpuset, restrict)[0])
        for n in (1, k):
            check_packing(topo, unit, n, topo.cpuset, restrict)


def test_core_never_half(tmp_path_factory):
    """-u core on an SMT machine: a core with one thread held (by an exclusive -u pu group) or outside
    --cpus is not free; the exclusive core's sibling never goes to anyone else."""
    topo = topology.read(str(dumps.unpack("16em64t-4s2c2t", tmp_path_factory)))
    core0 = topo.cores[0].cpuset
    one_thread = bits(core0)[0]
    pu_group = _claim("threads", [([one_thread], topo.mems_for([one_thread]))], unit="pu")
    free = topo.cpuset & ~pu_group.cpuset
    shards = allocation.pack(topo, "core", None, free)
    assert all(not mask_of(s.cpus) & core0 for s in shards)
    assert len(shards) == len(topo.cores) - 1
    # --cpus naming one thread of a core: that core is not a free core
    with pytest.raises(allocation.NoFreeUnits):
        allocation.pack(topo, "core", 1, topo.cpuset, restrict=1 << one_thread)
    # an exclusive core group: shared groups never get its sibling; -u pu packs into a half-used core first
    ex = _claim("ex", [(bits(core0), topo.mems_for(core0))])
    for s in sharing.plan_group(topo, "pu", None, None, "", [ex]):
        assert not mask_of(s.cpus) & core0
    half = allocation.pack(topo, "pu", 1, free)
    assert mask_of(half[0].cpus) & core0  # the free sibling of the held thread


def test_best_fit_beats_fewest_free_first(tmp_path_factory):
    """Asked for 3 cores with NUMA nodes that have 2 and 4 free cores: one node (the CPU Manager's
    fewest-free-first would span both)."""
    topo = topology.read(str(dumps.unpack("16amd64-8n2c", tmp_path_factory)))
    # 8 nodes x 2 cores: hold cores so that node 0 keeps 1 free core, node 1 both
    node0, node1 = [n.own for n in topo.numa_nodes if n.own][:2]
    held = [c.cpuset for c in topo.cores if c.cpuset & node0][:1]
    ex = _claim("ex", [(bits(h), topo.mems_for(h)) for h in held])
    shards = allocation.pack(topo, "core", 2, topo.cpuset & ~ex.cpuset)
    got = 0
    for s in shards:
        got |= mask_of(s.cpus)
    assert got & node0 == 0 or got & node1 == 0  # one node, not the half-used one plus another
    assert sum(1 for n in topo.numa_nodes if n.own & got) == 1


@pytest.mark.parametrize("dump", ["64amd64-4s2n4ca2co", "16amd64-8n2c", "128arm-2pa2n8cluster4co"], indirect=True)
def test_spread_evens_out_numa_nodes(dump):
    topo = topology.read(str(dump))
    nodes = [n.own for n in topo.numa_nodes if n.own]
    for n in (len(nodes), len(nodes) + 1, 2 * len(nodes) - 1):
        shards = allocation.pack(topo, "core", n, topo.cpuset, spread=True)
        per = [sum(1 for s in shards if mask_of(s.cpus) & x) for x in nodes]
        assert sum(per) == n and max(per) - min(per) <= 1, per
    packed = allocation.pack(topo, "core", len(nodes), topo.cpuset)
    assert sum(1 for x in nodes if any(mask_of(s.cpus) & x for s in packed)) < len(nodes)


@pytest.mark.parametrize("unit", ("pu", "core", "l3", "package"))
@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_shared_pool_equals_hwloc_distrib_restrict(dump, unit):
    require(hwloc_ref.available(), "hwloc is not installed (apt-get install hwloc)")
    topo = topology.read(str(dump))
    if not placement.units_of(topo, "core") or not placement.units_of(topo, unit):
        return
    other = _held_by_others(topo, "core")
    pool = topo.cpuset & ~other.cpuset
    if not pool:
        with pytest.raises(TessonError):
            sharing.plan_group(topo, unit, None, None, "", [other])
        return
    k = placement.default_size(topo, unit, pool)
    for n in sizes(k)[:5]:
        ref = hwloc_ref.distrib(dump, unit, n, restrict=bits(pool))
        got = sharing.plan_group(topo, unit, n, None, "", [other])
        assert [list(s.cpus) for s in got] == ref, (unit, n)


def test_moves_repin_shared_groups_and_refuse_starving(tmp_path_factory):
    topo = topology.read(str(dumps.unpack("16em64t-4s2c2t", tmp_path_factory)))
    shared = _claim("web", [(s.cpus, s.mems) for s in placement.plan(topo, "core", 4)], exclusive="")
    shared.containers = {i: [f"id{i}"] for i in range(4)}
    pkg0 = topo.packages[0].cpuset
    ex = _claim("db", [(bits(pkg0), topo.mems_for(pkg0))], unit="package")
    mv = holdings.moves(topo, [shared], [shared, ex])
    assert mv and all(not mask_of(m.cpus) & pkg0 for m in mv)
    assert [m.containers for m in mv] == [[f"id{m.index}"] for m in mv]
    new = holdings.effective(topo, [shared, ex])["web"]
    assert [list(s.cpus) for s in new] == [list(s.cpus) for s in placement.plan(topo, "core", 4, restrict=topo.cpuset & ~pkg0)]
    # the way back: from the pool without db to the whole machine
    back = holdings.moves(topo, [shared, ex], [shared])
    assert {(m.index, m.cpus) for m in back} == {(m.index, m.old_cpus) for m in mv}
    # taking everything leaves web without a CPU: refused
    everything = _claim("all", [(topo.pus, topo.mems_for(topo.cpuset))], unit="pu")
    with pytest.raises(holdings.NoCpuLeft) as e:
        holdings.moves(topo, [shared], [shared, everything])
    assert e.value.groups == ["web"]


def test_place_refuses_with_who_holds_what(tmp_path_factory):
    from tesson.request import Placement

    topo = topology.read(str(dumps.unpack("8em64t-2s2ca2c", tmp_path_factory)))
    ex = _claim("db", [(c.cpus, topo.mems_for(c.cpuset)) for c in topo.cores[:6]])
    p = Placement("web", "img", "core", topo, (), exclusive="packed", size_asked=3)
    with pytest.raises(TessonError) as e:
        sharing.place(p, [ex])
    msg = str(e.value)
    assert "3 core units asked for, only 2 of 8 are free" in msg and "db holds" in msg and "-n 2" in msg
    shared = _claim("api", [([c], topo.mems_for([c])) for c in topo.cores[6].cpus], exclusive="", unit="pu")
    p2 = Placement("web", "img", "core", topo, (), exclusive="packed", size_asked=2)
    with pytest.raises(TessonError) as e:
        sharing.place(p2, [ex, shared])
    assert "would leave shared group api without any CPU" in str(e.value) and "nothing was changed" in str(e.value)


def test_claims_from_labels_foreign_and_machine(tmp_path_factory):
    from tesson import labels as L
    from tesson.group import Spec

    topo = topology.read(str(dumps.unpack("8em64t-2s2ca2c", tmp_path_factory)))
    shards = placement.plan(topo, "core", 2)
    spec = Spec("g", "img", [], [], {}, "core", shards, exclusive="packed", restrict="0-3",
                limits=[{"Memory": 1 << 30}, {}], machine=holdings.machine_id(topo))
    mine = {"Id": "c0", "Labels": {**spec.labels(), L.ROLE: L.ROLE_SHARD, L.SHARD: "0"}}
    old = dict(mine["Labels"], **{L.GROUP: "old"})
    del old[L.MACHINE]
    (c, o) = holdings.claims_from_containers([mine, {"Id": "c1", "Labels": old}], topo)
    assert (c.name, c.exclusive, c.restrict, c.containers, c.limits[0], c.foreign) == (
        "g", "packed", 0xF, {0: ["c0"]}, {"Memory": 1 << 30}, False)
    assert o.foreign and holdings.exclusive_mask([c, o]) == c.cpuset


def test_machine_id_survives_a_memory_change_and_knows_the_old_labels(tmp_path_factory):
    """A VM's balloon or a memory hot-plug changes a node's MemTotal while the machine runs: the
    fingerprint must not move with it (every group would turn foreign, and the pool would ignore
    the exclusive groups' CPUs), but must still tell machines with other CPUs or nodes apart."""
    from tests import sysfs_builder

    def read(name, **kw):
        return topology.read(str(sysfs_builder.build(tmp_path_factory.mktemp(name), **kw)))

    small, big = read("small", mem_kb=4 << 20), read("big", mem_kb=8 << 20)
    assert [n.memory_bytes for n in small.numa_nodes] != [n.memory_bytes for n in big.numa_nodes]
    assert holdings.machine_id(small) == holdings.machine_id(big)
    assert holdings.machine_id(read("cores", cores=4)) != holdings.machine_id(small)
    assert holdings.machine_id(read("nodes", numa_per_package=2)) != holdings.machine_id(small)
    # a label written by the tesson before (memory in it) is this machine's while the memory is the same
    old = holdings._machine_id_with_memory(small)
    assert holdings.same_machine(small, old) and not holdings.same_machine(big, old)
    assert holdings.same_machine(big, holdings.machine_id(small))
    assert not holdings.same_machine(small, None) and not holdings.same_machine(small, "")


def test_quotas_auto_and_fit(tmp_path_factory):
    topo = topology.read(str(dumps.unpack("16amd64-8n2c", tmp_path_factory)))
    total = sum(n.memory_bytes for n in topo.numa_nodes)
    keep = quotas.host_reserve(total)
    assert quotas.host_reserve(16 << 30) == int((4 * .25 + 4 * .2 + 8 * .1) * (1 << 30)) + quotas.EVICTION
    shards = placement.plan(topo, "core", None)
    lims = quotas.limits(topo, shards, quotas.Quotas.parse("auto", "auto", "auto"))
    assert all(lim["CpuShares"] == 1024 * len(s.cpus) for s, lim in zip(shards, lims))
    assert all(lim["Memory"] == lim["MemoryReservation"] > 0 for lim in lims)
    assert total - keep - sum(lim["Memory"] for lim in lims) < len(shards) * quotas.MIB + keep // 100
    # the config's own values win over auto; a size given on the command line wins over the config
    cfg = {"HostConfig": {"Memory": 64 << 20, "CpuShares": 7}}
    lims = quotas.limits(topo, shards, quotas.Quotas.parse("auto", None, "auto"), cfg)
    assert lims[0] == {}
    assert quotas.limits(topo, shards, quotas.Quotas.parse("128m", None, "512"), cfg)[0] == {"Memory": 128 << 20, "CpuShares": 512}
    # exclusive memory per NUMA node: a second group asking for a node's whole memory does not fit
    node0 = [s for s in shards if s.mems == (0,)]
    big = quotas.limits(topo, node0, quotas.Quotas.parse("auto", None, None))
    quotas.check_fit(topo, "a", node0, big, [])
    with pytest.raises(TessonError, match=r"does not fit NUMA node 0.*held: a "):
        quotas.check_fit(topo, "b", node0[:1], [{"Memory": 64 << 20}], [("a", node0, big)])
    for bad in ("lots", "1x", "-5m", "1m"):
        with pytest.raises(UsageError):
            quotas.Quotas.parse(bad, None, None)
    with pytest.raises(UsageError):
        quotas.Quotas.parse("1g", "2g", None)
    assert quotas.parse_size("1.5g") == 3 << 29 and quotas.parse_size("2GiB") == 2 << 30


def test_lock_holder_dead_rules():
    import os
    import socket

    from tesson import daemon_lock

    me = daemon_lock.owner()
    assert daemon_lock.holder_dead(me, 1.0) == ""  # alive, young
    assert "older than" in daemon_lock.holder_dead(me, daemon_lock.STALE + 1)
    host = socket.gethostname()
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    assert "is gone" in daemon_lock.holder_dead(f"{host} {p.pid} 1.00", 1.0)
    assert "another process" in daemon_lock.holder_dead(f"{host} {os.getpid()} 1.00", 1.0)
    assert daemon_lock.holder_dead(f"elsewhere {os.getpid()} 1.00", 1.0) == ""  # cannot tell: wait
