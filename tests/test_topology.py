"""tesson's topology against the real hwloc, on every sysfs dump in tests/fixtures and on hand-built trees."""

from __future__ import annotations

import json
import os
import re

import pytest

from tesson import topology
from tesson.errors import UsageError
from tesson.topology.render import render_text
from tests import dumps, hwloc_ref, sysfs_builder
from tests.conftest import require, tesson_cmd


@pytest.fixture
def dump(request, tmp_path_factory):
    name = request.param
    return dumps.unpack(name, tmp_path_factory)


def needs_hwloc():
    require(hwloc_ref.available(), "hwloc is not installed (apt-get install hwloc)")


def test_reference_is_the_hwloc_tesson_follows():
    """tesson follows hwloc 2.9 (README, "Which hwloc"); another release may differ on purpose."""
    needs_hwloc()
    assert hwloc_ref.version().rsplit(".", 1)[0] == hwloc_ref.FOLLOWED, (
        f"hwloc {hwloc_ref.version()} is installed; tesson follows hwloc {hwloc_ref.FOLLOWED}: check its release "
        "notes for changed defaults (NVIDIA GPU memory nodes, s390 books and drawers) before moving on")


@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_topology_matches_hwloc(dump):
    """PUs, cores, NUMA nodes (ids, CPUs, memory), packages and L3 equal what lstopo shows, in order."""
    needs_hwloc()
    ref = hwloc_ref.summary(hwloc_ref.lstopo(dump))
    got = topology.read(str(dump)).to_json()
    assert ref["pus"], "hwloc found no PU: the reference itself is broken"
    for key in ("pus", "cores", "numa_nodes", "packages", "l3"):
        assert got[key] == ref[key], key


@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_cli_topology_json_matches_hwloc(dump):
    needs_hwloc()
    r = tesson_cmd("--fsroot", str(dump), "topology", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    devices = doc.pop("devices")
    assert doc == hwloc_ref.summary(hwloc_ref.lstopo(dump))
    if dump.name not in ("2pa-pcidomain32bits",):  # a 32-bit PCI domain: see tests/test_devices.py
        assert devices == hwloc_ref.devices(dump)


def test_fixtures_are_the_listed_dumps_with_hwlocs_licence():
    """Every dump in tests/fixtures is compared (dumps.NAMES), and hwloc's licence sits beside them."""
    have = sorted(p.name[: -len(".tar.bz2")] for p in dumps.DUMPS_DIR.glob("*.tar.bz2"))
    assert have == sorted(dumps.NAMES)
    assert "BSD" in (dumps.DUMPS_DIR / "COPYING.hwloc").read_text()


def tesson_tree(text: str) -> list[str]:
    """tesson's text tree without what it adds to lstopo's (allowed PUs, each object's CPUs)."""
    text = re.sub(r"^Machine \(([^,]*) total, [^)]*\)", r"Machine (\1 total)", text)
    return [re.sub(r"  \[cpus [^\]]*\]", "", line).rstrip() for line in text.splitlines()]


@pytest.mark.parametrize("dump", dumps.NAMES, indirect=True)
def test_cli_topology_text_is_lstopos_tree(dump):
    """The text view is lstopo's console view: same objects, same nesting, same order and labels."""
    needs_hwloc()
    r = tesson_cmd("topology", env={"TESSON_FSROOT": str(dump)})
    assert r.returncode == 0, r.stderr
    topo = topology.read(str(dump))
    assert r.stdout.splitlines()[0].startswith("Machine (") and f"{len(topo.pus)} PUs allowed" in r.stdout
    if dump.name != "2pa-pcidomain32bits":  # a 32-bit PCI domain: see tests/test_devices.py
        assert tesson_tree(r.stdout) == hwloc_ref.lstopo_console(dump, io=True)
    assert tesson_tree(render_text(topo, io=False)) == hwloc_ref.lstopo_console(dump)


# ---- hand-built trees: what the dumps lack ------------------------------------------------------

BUILT = {
    "cgroup-v1": dict(cgroup="v1", cgroup_cpus=[0, 1, 2, 9, 10], cgroup_mems=[0]),
    "cgroup-v1-found-in-mounts": dict(cgroup="v1-mounts", cgroup_cpus=[4, 5, 6, 7]),
    "cgroup-v2": dict(cgroup="v2", cgroup_cpus=[1, 2, 3, 12, 13], cgroup_mems=[1]),
    "old-cpuset-fs": dict(cgroup="cpuset", cgroup_cpus=[0, 3, 8]),
    "cgroup-v1-noprefix": dict(cgroup="v1-noprefix", cgroup_cpus=[2, 3, 6]),
    "no-cache-files": dict(caches=False),
    "old-sibling-names": dict(old_names=True),
    "offline-cpus": dict(offline=[0, 5, 6]),
    "online-cpu-without-topology": dict(no_topology=[2]),
    "sub-numa-clustering": dict(cores=4, numa_per_package=2),
    "numa-distance-pairs": dict(packages=4, cores=2, threads=1, distances=[
        [10, 16, 32, 32], [16, 10, 32, 32], [32, 32, 10, 16], [32, 32, 16, 10]]),
    "memory-only-node-near-node-0": dict(cpuless_nodes=1, distances=[[10, 21, 17], [21, 10, 28], [17, 28, 10]]),
    "memory-only-node-between-nodes": dict(
        packages=3, cpuless_nodes=1,
        distances=[[10, 20, 30, 15], [20, 10, 30, 15], [30, 30, 10, 40], [15, 15, 40, 10]]),
    "memory-only-node-equally-far": dict(cpuless_nodes=1, distances=[[10, 20, 30], [20, 10, 30], [30, 30, 10]]),
    "memory-only-node-hmat-initiators": dict(
        cpuless_nodes=1, distances=[[10, 21, 17], [21, 10, 28], [17, 28, 10]], initiators={2: [1]}),
    "sub-numa-clustering-l3-per-node": dict(cores=4, numa_per_package=2, l3_per="numa"),
    # NVIDIA GPUs' memory as memory-only NUMA nodes (proc/driver/nvidia/gpus/*/numa_status): hidden
    "nvidia-gpu-memory-nodes": dict(
        cpuless_nodes=2, nvidia_gpu_nodes={2: 0, 3: 1},
        distances=[[10, 20, 15, 40], [20, 10, 40, 15], [15, 40, 10, 40], [40, 15, 40, 10]]),
    "nvidia-gpu-node-beside-a-memory-only-node": dict(
        cpuless_nodes=2, nvidia_gpu_nodes={3: 1},
        distances=[[10, 20, 15, 40], [20, 10, 40, 15], [15, 40, 10, 40], [40, 15, 40, 10]]),
    # cores that list different caches: one index is not the same cache on every core
    "l2-shared-by-the-last-cores-only": dict(cores=6, caches_of=sysfs_builder.uneven_caches(l2_shared=(3, 4, 5))),
    "l1-on-some-cores-only": dict(cores=4, caches_of=sysfs_builder.uneven_caches(l1_on=(0, 3))),
    "l2-pair-and-l1-on-some-cores": dict(cores=4, caches_of=sysfs_builder.uneven_caches(l2_shared=(2, 3), l1_on=(1, 2))),
    # as many caches on every core, index2 an own L2 on two cores and an L3 the two others share
    # (tesson reads a cache's type and level once per shape: this one must not be taken for that one)
    "l2-on-two-cores-l3-on-two-others": dict(cores=4, caches_of=sysfs_builder.uneven_caches(l2_on=(0, 1), l3_on=(2, 3))),
}


@pytest.fixture
def built(request, tmp_path):
    return sysfs_builder.build(tmp_path / request.param, **BUILT[request.param])


@pytest.mark.parametrize("built", sorted(BUILT), indirect=True)
def test_built_tree_matches_hwloc(built):
    needs_hwloc()
    ref = hwloc_ref.summary(hwloc_ref.lstopo(built))
    topo = topology.read(str(built))
    doc = topo.to_json()
    assert doc.pop("devices") == hwloc_ref.devices(built)
    assert doc == ref
    from tesson.topology.render import render_text

    assert tesson_tree(render_text(topo)) == hwloc_ref.lstopo_console(built, io=True)


@pytest.mark.parametrize(
    "kind,expected",
    [("cgroup-v1", [0, 1, 2]), ("cgroup-v2", [1, 2, 3]), ("old-cpuset-fs", [0, 3]),
     ("cgroup-v1-found-in-mounts", [4, 5, 6, 7]), ("cgroup-v1-noprefix", [2, 3, 6])],
)
def test_cgroup_restricts_cpus(tmp_path, kind, expected):
    """2 packages x 2 cores x 2 threads = CPUs 0-7; the cgroup lists CPUs beyond 7 that do not exist."""
    topo = topology.read(str(sysfs_builder.build(tmp_path, **BUILT[kind])))
    assert topo.pus == expected
    assert sorted(p for c in topo.cores for p in c.cpus) == expected


def test_cgroup_mems_leave_out_numa_nodes(tmp_path):
    topo = topology.read(str(sysfs_builder.build(tmp_path, **BUILT["cgroup-v2"])))
    assert [n.id for n in topo.numa_nodes] == [1]
    assert topo.mems_for([1, 2, 3]) == [1]  # CPUs 1 and 3 are on node 1, CPU 2 on node 0 (not allowed)


def test_nvidia_gpu_memory_nodes_are_hidden(tmp_path):
    """As hwloc 2.9 does by default: the GPU's node is not listed and its memory is not counted."""
    topo = topology.read(str(sysfs_builder.build(tmp_path, **BUILT["nvidia-gpu-node-beside-a-memory-only-node"])))
    assert [n.id for n in topo.numa_nodes] == [0, 1, 2]
    assert topo.mems_for(topo.pus) == [0, 1, 2]
    assert sum(n.memory_bytes for n in topo.numa_nodes) == 3 * 4 * 1024**3


def test_isolated_cpus_left_out_only_when_asked(tmp_path):
    root = str(sysfs_builder.build(tmp_path, isolated=[2, 3, 6]))
    assert topology.read(root).pus == list(range(8))
    topo = topology.read(root, include_isolated=False)
    assert topo.pus == [0, 1, 4, 5, 7]
    assert all(set(c.cpus) <= {0, 1, 4, 5, 7} for c in topo.cores)
    assert [n.cpus for n in topo.numa_nodes] == [[0, 1, 4, 5], [7]]  # package 0: CPUs 0,1,4,5


def test_isolated_matches_hwloc_restricted(tmp_path):
    """Leaving out isolated CPUs is hwloc with the topology restricted to the other CPUs."""
    needs_hwloc()
    root = str(sysfs_builder.build(tmp_path, packages=2, cores=4, threads=2, isolated=[0, 8, 3]))
    topo = topology.read(root, include_isolated=False)
    keep = [c for c in range(16) if c not in (0, 3, 8)]
    assert topo.pus == keep
    from tesson import placement

    for unit in ("pu", "core", "l3", "package"):
        for n in (1, 2, 3, 5, 7, 13):
            ref = hwloc_ref.distrib(root, unit, n, restrict=keep)
            assert [list(s.cpus) for s in placement.plan(topo, unit, n)] == ref, (unit, n)


def test_cli_no_isolated(tmp_path):
    root = str(sysfs_builder.build(tmp_path, isolated=[0, 1]))
    r = tesson_cmd("--fsroot", root, "--no-isolated", "topology", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pus"] == [2, 3, 4, 5, 6, 7]
    r = tesson_cmd("--fsroot", root, "topology", "--format", "json")
    assert json.loads(r.stdout)["pus"] == list(range(8))


def test_no_cache_files_means_no_l3(tmp_path):
    topo = topology.read(str(sysfs_builder.build(tmp_path, caches=False)))
    assert topo.l3 == [] and len(topo.cores) == 4 and len(topo.packages) == 2


def test_real_machine_matches_hwloc():
    """fsroot / : the machine running the tests (its cgroup included) as hwloc's Linux backend sees it."""
    topo = topology.read("/")
    assert topo.pus and set(os.sched_getaffinity(0)) <= set(topo.pus)
    needs_hwloc()
    doc = topo.to_json()
    assert doc.pop("devices") == hwloc_ref.devices("/")
    assert doc == hwloc_ref.summary(hwloc_ref.lstopo("/"))
    assert tesson_tree(render_text(topo)) == hwloc_ref.lstopo_console("/", io=True)


# ---- bad input -----------------------------------------------------------------------------------


def test_fsroot_without_sys(tmp_path):
    with pytest.raises(UsageError, match="sys/"):
        topology.read(str(tmp_path))
    r = tesson_cmd("--fsroot", str(tmp_path), "topology")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = tesson_cmd("--fsroot", str(tmp_path / "nope"), "run", "--dry-run", "img")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_empty_allowed_set(tmp_path):
    """The cgroup allows only CPUs that are offline: nothing is left, exit 2 with one line."""
    root = str(sysfs_builder.build(tmp_path, cgroup="v1", cgroup_cpus=[6, 7], offline=[6, 7]))
    with pytest.raises(UsageError, match="no CPU"):
        topology.read(root)
    for argv in (["topology"], ["run", "--dry-run", "img"], ["run", "--dry-run", "-u", "numa", "img"]):
        r = tesson_cmd("--fsroot", root, *argv)
        assert r.returncode == 2, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_all_isolated_is_empty(tmp_path):
    root = str(sysfs_builder.build(tmp_path, packages=1, cores=1, threads=2, isolated=[0, 1]))
    r = tesson_cmd("--fsroot", root, "--no-isolated", "run", "--dry-run", "img")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "isolated" in r.stderr


def test_cpulist_and_mask_files_with_trailing_nul(tmp_path):
    """Some dumps (and kernels) end sysfs files with a NUL byte after the newline."""
    root = sysfs_builder.build(tmp_path, packages=1, cores=2, threads=1)
    f = root / "sys/devices/system/cpu/cpu0/topology/core_cpus"
    f.write_bytes(f.read_bytes() + b"\0")
    assert [c.cpus for c in topology.read(str(root)).cores] == [[0], [1]]


def test_sysfs_without_cpu_topology(tmp_path):
    (tmp_path / "sys/devices/system/cpu/cpu0").mkdir(parents=True)  # a CPU, but no topology/
    (tmp_path / "sys/devices/system/cpu/online").write_text("0\n")
    with pytest.raises(UsageError, match="topology"):
        topology.read(str(tmp_path))
    r = tesson_cmd("--fsroot", str(tmp_path), "run", "--dry-run", "img")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ---- one cpulist/cpumask parser: malformed text is refused, never guessed ---------------------------


def test_cpulist_parser_refuses_malformed_text():
    from tesson import cpulist

    assert cpulist.list_to_mask("0-3,8\n") == 0b1_0000_1111 and cpulist.list_to_mask(" ") == 0
    assert cpulist.hex_to_mask("00000001,0000000f\n") == (1 << 32) | 0xF and cpulist.hex_to_mask("") == 0
    for bad in ("5-3", "0-3,9-8", "a", "1-", "-1", "0-3;8", "1_0"):
        with pytest.raises(ValueError):
            cpulist.parse(bad)
    for bad in ("0x0f", "zz", "1_f", "-f"):
        with pytest.raises(ValueError):
            cpulist.parse_mask(bad)


@pytest.mark.parametrize("path,text", [
    ("sys/devices/system/cpu/online", "0-3,7-4"),  # hwloc would drop 7-4 and keep going
    ("sys/devices/system/cpu/cpu1/topology/core_cpus", "0x3"),
])
def test_malformed_sysfs_file_is_refused_with_its_name(tmp_path, path, text):
    root = sysfs_builder.build(tmp_path, packages=1, cores=4, threads=2)
    (root / path).write_text(text + "\n")
    with pytest.raises(UsageError, match=re.escape(str(root / path))):
        topology.read(str(root))
    r = tesson_cmd("--fsroot", str(root), "topology")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert path in r.stderr
