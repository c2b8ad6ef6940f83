"""I/O devices and ``run --near``: tesson against the real hwloc (hwloc-calc, hwloc-distrib --restrict,
lstopo --whole-io) on every sysfs dump with devices, and on hand-built trees for what they lack."""

from __future__ import annotations

import json

import pytest

from tesson import near, placement, topology
from tesson.errors import UsageError
from tesson.topology.render import render_text
from tests import dumps, hwloc_ref, sysfs_builder
from tests.conftest import require, tesson_cmd
from tests.test_topology import tesson_tree

WITH_DEVICES = ("2pa-pcidomain32bits", "fakepcilocalities")
UNITS = ("pu", "core", "l3", "package")

# Debian's hwloc 2.9 is built without 32-bit PCI domains: it drops PCI domain 10000 of this dump and
# hangs vda on the Machine. tesson reads the domain, as hwloc's own reference for this dump does
# (2pa-pcidomain32bits.console, made with --enable-32bits-pci-domain): vda sits in Package P#1.
DOMAIN32 = {"2pa-pcidomain32bits": {"vda": {"pci": "10000:00:04.0", "cpus": [1], "numa_nodes": [0]}}}


@pytest.fixture
def dump(request, tmp_path_factory):
    return request.param, dumps.unpack(request.param, tmp_path_factory)


def needs_hwloc():
    require(hwloc_ref.available(), "hwloc is not installed (apt-get install hwloc)")


def expected_devices(name, root) -> list[dict]:
    ref = hwloc_ref.devices(str(root))
    fix = DOMAIN32.get(name, {})
    out = [dict(d, **fix.get(d["name"], {})) for d in ref if d["name"] not in fix]
    return out + [dict(d, **fix[d["name"]]) for d in ref if d["name"] in fix]


def test_32bit_domain_reference_is_hwlocs_own():
    """The vda expectation above is what hwloc's reference for that dump shows."""
    text = (dumps.DUMPS_DIR / "2pa-pcidomain32bits.console").read_text()
    pkg1 = text.split("Package L#1", 1)[1]
    assert "busid=10000:00:04.0" in pkg1 and '"vda"' in pkg1


@pytest.mark.parametrize("dump", WITH_DEVICES, indirect=True)
def test_devices_match_hwloc_calc(dump):
    """Every OS device hwloc lists (lstopo --whole-io), in its order, with hwloc-calc's CPUs and nodes."""
    needs_hwloc()
    name, root = dump
    topo = topology.read(str(root))
    got = topo.to_json()["devices"]
    ref = expected_devices(name, root)
    assert ref, "hwloc found no device: the reference is broken"
    key = lambda d: d["name"]  # the 32-bit domain device moves in hwloc's order
    assert sorted(got, key=key) == sorted(ref, key=key)
    if name not in DOMAIN32:
        assert got == ref
    for d in got:
        if d["name"] in DOMAIN32.get(name, {}):
            assert hwloc_ref.calc(str(root), f"os={d['name']}") == topo.pus  # Debian's: the Machine
            continue
        assert hwloc_ref.calc(str(root), f"os={d['name']}") == d["cpus"]
        assert hwloc_ref.calc(str(root), f"os={d['name']}", nodeset=True) == d["numa_nodes"]


@pytest.mark.parametrize("dump", WITH_DEVICES, indirect=True)
def test_near_plans_match_hwloc_distrib_restrict(dump):
    """run --near DEV -u UNIT -n N is hwloc-distrib --restrict $(hwloc-calc os=DEV) --to UNIT N, plan
    by plan, for every device, unit and several N (and for every PCI function, by address)."""
    needs_hwloc()
    name, root = dump
    topo = topology.read(str(root))
    targets = [d.name for d in topo.devices if d.name not in DOMAIN32.get(name, {})]
    targets += [o.busid for o in topo.io.pci_objects() if o.domain <= 0xFFFF and not o.bridge]
    checked = 0
    for target in targets:
        loc = ("os=" if ":" not in target else "pci=") + target
        cpus = hwloc_ref.calc(str(root), loc)
        restrict = near.resolve(topo, [target])
        assert restrict.warnings == []
        assert sorted(b for b in range(restrict.cpuset.bit_length()) if restrict.cpuset >> b & 1) == cpus
        for unit in UNITS:
            n_units = len(placement.units_of(topo, unit, restrict.cpuset))
            for n in sorted({1, 2, 3, n_units, n_units + 1} - {0}):
                ref = hwloc_ref.distrib(str(root), unit, n, restrict=cpus)
                if ref is None:  # hwloc refuses a unit the machine lacks: so does tesson
                    with pytest.raises(UsageError):
                        placement.plan(topo, unit, n, restrict=restrict.cpuset)
                    continue
                got = placement.plan(topo, unit, n, restrict=restrict.cpuset)
                assert [list(s.cpus) for s in got] == ref, (target, unit, n)
                for s in got:
                    assert set(s.mems) <= set(topo.mems_for(restrict.cpuset))
                checked += 1
    assert checked > 20


def test_two_devices_on_different_packages_of_a_dump(tmp_path_factory):
    needs_hwloc()
    root = dumps.unpack("fakepcilocalities", tmp_path_factory)
    topo = topology.read(str(root))
    r = near.resolve(topo, ["eth0", "ib0"])
    cpus = hwloc_ref.calc(str(root), "os=eth0", "os=ib0")
    for unit in UNITS:
        for n in (1, 2, 5, 20, 21):
            ref = hwloc_ref.distrib(str(root), unit, n, restrict=cpus)
            if ref is not None:
                assert [list(s.cpus) for s in placement.plan(topo, unit, n, restrict=r.cpuset)] == ref


@pytest.mark.parametrize("dump", WITH_DEVICES, indirect=True)
def test_text_view_is_lstopo_whole_io(dump):
    needs_hwloc()
    name, root = dump
    topo = topology.read(str(root))
    got = tesson_tree(render_text(topo))
    ref = hwloc_ref.lstopo_console(str(root), io=True)
    if name == "2pa-pcidomain32bits":  # hwloc's reference layout for domain 10000 (see DOMAIN32)
        ref = [line.replace("PCI 00:", "PCI 0000:00:") for line in ref if line != '  Block "vda"']
        at = ref.index("  Package P#1 + L2 (4096KB) + L1d (32KB) + Core P#0 + PU P#1")
        ref[at:at + 1] = ["  Package P#1", "    L2 (4096KB) + L1d (32KB) + Core P#0 + PU P#1", "    HostBridge",
                          "      PCI 10000:00:00.0 (HostBridge)", "      PCI 10000:00:04.0 (SCSI)",
                          '        Block "vda"']
    assert got == ref


# ---- hand-built trees ----------------------------------------------------------------------------

def _two_nodes(tmp_path, devices, **kw):
    """2 packages x 2 cores x 2 threads, one NUMA node per package, with these devices."""
    return sysfs_builder.build(tmp_path, distances=[[10, 20], [20, 10]], devices=devices, **kw)


def test_two_devices_on_different_nodes(tmp_path):
    Dev = sysfs_builder.Dev
    root = _two_nodes(tmp_path, [Dev("eth0", pci="0000:05:00.0", local_cpus=[0, 1, 4, 5], numa_node=0),
                                 Dev("nvme0n1", "block", pci="0000:85:00.0", local_cpus=[2, 3, 6, 7],
                                     numa_node=1, class_id=0x010802)])
    topo = topology.read(str(root))
    devs = {d["name"]: d for d in topo.to_json()["devices"]}
    assert devs["eth0"] == {"name": "eth0", "kind": "net", "pci": "0000:05:00.0", "cpus": [0, 1, 4, 5], "numa_nodes": [0]}
    assert devs["nvme0n1"]["cpus"] == [2, 3, 6, 7] and devs["nvme0n1"]["numa_nodes"] == [1]
    plan = placement.plan(topo, "core", None, restrict=near.resolve(topo, ["nvme0n1"]).cpuset)
    assert [(s.cpus, s.mems) for s in plan] == [((2, 6), (1,)), ((3, 7), (1,))]
    both = near.resolve(topo, ["eth0", "nvme0n1"])
    assert both.cpuset == topo.cpuset and both.warnings == []
    needs_hwloc()
    for name in ("eth0", "nvme0n1"):
        assert hwloc_ref.calc(str(root), f"os={name}") == devs[name]["cpus"]
    for unit in ("pu", "core", "package"):
        for n in (1, 2, 3, 5):
            cpus = hwloc_ref.calc(str(root), "os=nvme0n1")
            ref = hwloc_ref.distrib(str(root), unit, n, restrict=cpus)
            assert [list(s.cpus) for s in placement.plan(topo, unit, n, restrict=near.resolve(topo, ["nvme0n1"]).cpuset)] == ref


def test_device_without_locality_places_on_the_whole_machine(tmp_path):
    Dev = sysfs_builder.Dev
    root = _two_nodes(tmp_path, [Dev("eth0", pci="0000:05:00.0", local_cpus=[], numa_node=-1),
                                 Dev("sdb", "block", numa_node=-1),
                                 Dev("veth1", virtual=True)])
    topo = topology.read(str(root))
    for name in ("eth0", "sdb", "veth1"):
        r = near.resolve(topo, [name])
        assert r.cpuset == topo.cpuset
        assert len(r.warnings) == 1 and name in r.warnings[0] and "whole machine" in r.warnings[0]
        assert placement.plan(topo, "core", None, restrict=r.cpuset) == placement.plan(topo, "core")
    assert "veth1" not in [d.name for d in topo.devices]  # hwloc does not list virtual devices
    needs_hwloc()
    assert hwloc_ref.calc(str(root), "os=eth0") == topo.pus  # hwloc hangs it on the Machine too
    assert hwloc_ref.calc(str(root), "os=sdb") == topo.pus
    r = tesson_cmd("--fsroot", str(root), "run", "--dry-run", "--near", "veth1", "img")
    assert r.returncode == 0 and r.stderr.count("\n") == 1 and "no known locality" in r.stderr


def test_device_by_numa_node_without_pci(tmp_path):
    root = _two_nodes(tmp_path, [sysfs_builder.Dev("pmem0", "block", numa_node=1)])
    topo = topology.read(str(root))
    dev = topo.to_json()["devices"][0]
    assert dev["cpus"] == [2, 3, 6, 7] and dev["numa_nodes"] == [1] and dev["pci"] is None
    needs_hwloc()
    assert hwloc_ref.calc(str(root), "os=pmem0") == dev["cpus"]


def test_device_on_a_memoryless_node(tmp_path):
    """The device's node has CPUs but no memory: the shards run on its CPUs and take memory from
    the nearest node that has some (the kernel refuses cpuset.mems of memory-less nodes only)."""
    root = sysfs_builder.build(
        tmp_path, packages=3, distances=[[10, 20, 30], [20, 10, 15], [30, 15, 10]], node_mem_kb={1: 0},
        devices=[sysfs_builder.Dev("eth0", pci="0000:05:00.0", local_cpus=[2, 3, 8, 9], numa_node=1)])
    topo = topology.read(str(root))
    r = near.resolve(topo, ["eth0"])
    needs_hwloc()
    cpus = hwloc_ref.calc(str(root), "os=eth0")
    assert cpus == [2, 3, 8, 9] and hwloc_ref.calc(str(root), "os=eth0", nodeset=True) == [1]
    plan = placement.plan(topo, "core", None, restrict=r.cpuset)
    assert [list(s.cpus) for s in plan] == hwloc_ref.distrib(str(root), "core", 2, restrict=cpus)
    assert [s.mems for s in plan] == [(2,), (2,)]


def test_unknown_device_is_a_usage_error(tmp_path_factory):
    root = dumps.unpack("fakepcilocalities", tmp_path_factory)
    r = tesson_cmd("--fsroot", str(root), "run", "--dry-run", "--near", "eth9", "img")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "eth9" in r.stderr and "eth0" in r.stderr and "ib0" in r.stderr


def test_cli_near_dry_run(tmp_path_factory):
    root = dumps.unpack("fakepcilocalities", tmp_path_factory)
    r = tesson_cmd("--fsroot", str(root), "run", "--dry-run", "--near", "ib0", "-n", "3", "--format", "json", "img")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["near"] == ["ib0"] and [s["cpus"] for s in doc["shards"]] == [[1, 5, 9], [13, 17, 21], [25, 29, 33, 37]]
    assert all(s["mems"] == [1] for s in doc["shards"])
    r = tesson_cmd("--fsroot", str(root), "run", "--dry-run", "--near", "ib0", "img")
    assert r.returncode == 0 and "near=ib0" in r.stdout.splitlines()[0]


def test_plain_plan_reads_no_device(tmp_path_factory, monkeypatch):
    """run --dry-run without --near never reads I/O (Topology.io stays unread)."""
    root = dumps.unpack("fakepcilocalities", tmp_path_factory)
    from tesson.topology import io

    def boom(*a, **k):
        raise AssertionError("I/O read")

    monkeypatch.setattr(io, "read", boom)
    topo = topology.read(str(root))
    placement.plan(topo, "core")


def test_near_label_round_trip():
    """The --near devices are one label; ps reads them back (and a group without one has none)."""
    from tesson import group as G
    from tesson import labels as L
    from tesson.placement import Shard

    spec = G.Spec("web", "img", [], [], {}, "core", [Shard(0, (1, 5), (1,))], "none", ["ib0", "0000:02:00.0"])
    labels = spec.labels()
    assert json.loads(labels[L.NEAR]) == ["ib0", "0000:02:00.0"]
    assert G.Spec.from_labels(labels).near == ["ib0", "0000:02:00.0"]
    grp = G.Group("web", labels, spec, [], [])
    assert grp.near == ["ib0", "0000:02:00.0"]
    plain = G.Spec("web", "img", [], [], {}, "core", [Shard(0, (1, 5), (1,))]).labels()
    assert L.NEAR not in plain and G.Group("web", plain, None, [], []).near == []
