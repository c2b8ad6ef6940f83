"""The machine's hardware as hwloc's Linux backend sees it, read from sysfs and procfs under a root.

Pure and quick to import: the standard library only (no docker, requests or structlog here).

``read(fsroot)`` is the one entry point. It returns a :class:`Topology`: an hwloc-like tree of
:class:`Obj` (machine > package > [NUMA group when a NUMA node splits a package] > die > cluster >
L3 > L2 > core > PU), restricted to the CPUs a process can really get: online CPUs, less what the
process's cgroup cpuset excludes, and, if asked, less the kernel's isolated CPUs.

The package follows hwloc's own line between its Linux backend and its object tree:

- ``model``: the objects, NUMA nodes and :class:`Topology` (with its levels); no file access;
- ``sysfs``: reading files under the root (hwloc's HWLOC_FSROOT);
- ``cgroup``: the CPUs and memory nodes the process's cpuset allows;
- ``cpus``: the CPU scan (cores, dies, packages, caches...: hwloc's look_sysfscpu);
- ``numa``: NUMA nodes, their locality and distance Groups (hwloc's look_sysfsnode);
- ``tree``: nesting it all by cpuset as hwloc's core does;
- ``render``: the JSON and text views (``tesson topology``).

CPU sets are Python ints used as bitmasks (tesson.cpulist). The discovery follows hwloc 2.x's
``topology-linux.c`` so the tree, hence the placement, equals hwloc's on the same folder.
"""

from __future__ import annotations

import os

from tesson.cpulist import bits, mask_of, weight
from tesson.errors import UsageError
from tesson.topology import cgroup, cpus, numa, tree
from tesson.topology.model import GROUPS, RANK, NumaNode, Obj, Topology, level_type
from tesson.topology.sysfs import FS

__all__ = ["GROUPS", "RANK", "NumaNode", "Obj", "Topology", "bits", "level_type", "mask_of", "read", "weight"]


def read(fsroot: str = "/", include_isolated: bool = True, fs: FS | None = None) -> Topology:
    """Read the topology of the machine whose ``sys/`` and ``proc/`` are under ``fsroot``
    (or, when ``fs`` is given, as that reader finds them: tesson.probe_collect's, which maps
    and notes every path; the topology's I/O devices are later read through it too).

    Raises UsageError for a root without ``sys/``, a machine without CPUs in sysfs, an empty set
    of allowed CPUs, or a malformed cpulist/cpumask file.
    """
    fsroot = fsroot or "/"
    fs = fs or FS(fsroot)
    if not os.path.isdir(fs.path("/sys")):
        raise UsageError(f"no sys/ under {fsroot!r}: --fsroot must name a folder holding sys/ and proc/")
    present, listed, objs = cpus.discover(fs)
    if not present:
        raise UsageError(
            f"no online CPU with topology information in {os.path.join(fsroot, 'sys/devices/system/cpu')}"
        )

    allowed_cpus, allowed_mems = cgroup.allowed_from_cgroup(fs)
    allowed = present if allowed_cpus is None else present & allowed_cpus
    isolated = allowed & (fs.read_list("/sys/devices/system/cpu/isolated") or 0)
    if not include_isolated:
        allowed &= ~isolated
    if not allowed:
        why = " and not isolated" if not include_isolated else ""
        raise UsageError(f"no CPU is both online and allowed by this process's cpuset{why} (fsroot {fsroot!r})")

    nodes, groups = numa.discover(fs)
    if nodes is None:
        nodes = [NumaNode(0, present, numa.meminfo_total(fs, "/proc/meminfo"))]
    raw = [n.cpuset for n in nodes]
    for n in nodes:
        n.cpuset &= present
        n.own &= present
    root = tree.build(present, listed, objs, raw)
    if allowed_mems is not None:
        nodes = [n for n in nodes if allowed_mems >> n.id & 1]
    nodes.sort(key=lambda n: n.id)
    tree.attach_memory(root, nodes)
    for cpuset, node_ids in groups:  # after the NUMA nodes, as hwloc adds them
        if cpuset & present:
            tree.insert_distance_group(root, cpuset & present, node_ids)
    tree.prune_groups(root)
    if allowed != present:
        tree.restrict(root, allowed)
        for n in nodes:
            n.cpuset &= allowed
            n.own &= allowed
    topo = Topology(root, nodes, fsroot)
    topo.fs = fs
    topo.isolated = isolated
    return topo
