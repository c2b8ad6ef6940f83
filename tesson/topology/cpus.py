"""The CPU scan: cores, clusters, dies, packages, s390 books and drawers, caches and PUs, read from
sys/devices/system/cpu as hwloc 2.x's look_sysfscpu reads them.

Each object comes out as a tuple (kind, os_index, cpuset, attrs) for the tree builder; ids and sizes,
only used for display, are :class:`~tesson.topology.model.Lazy`.
"""

from __future__ import annotations

import os

from tesson.cpulist import bits, first, weight
from tesson.topology.model import Lazy
from tesson.topology.sysfs import FS


def _is_amd_with_compute_units(fs: FS) -> bool:
    """Bulldozer-family AMD (family 0x15/0x16): siblings with different core ids are separate cores."""
    data = fs.read_head("/proc/cpuinfo")  # the first processor's block is enough
    if not data:
        return False
    vendor = family = None
    for line in data.decode(errors="replace").split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id":
            vendor = value.strip()
        elif key == "cpu family":
            family = value.strip()
    return vendor == "AuthenticAMD" and family in ("21", "22")


def _arch(fs: FS) -> str:
    """The machine's architecture: a dump's proc/hwloc-nofile-info says it, else this kernel's.

    As hwloc 2.9 finds it when not told HWLOC_THISSYSTEM=1 (with it, hwloc takes the host's
    architecture even for a dump's folder, and so reads no s390 books on an x86 host).
    """
    data = fs.read("/proc/hwloc-nofile-info")
    if data:
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("Architecture: "):
                return line[len("Architecture: "):].strip()
    return os.uname().machine


def discover(fs: FS):
    """Return (present cpuset, listed cpuset, list of (kind, os_index, cpuset, attrs)) like hwloc's
    look_sysfscpu.

    Present CPUs are the online ones that have a ``topology/`` folder. Every cpuset read is restricted
    to them; an object is made by the first present CPU of its set. Reads whose only possible outcome
    is "not the first CPU of a set already seen" are skipped (hwloc makes them, then ignores them),
    a cache's type and level are read once per shape of cache (see the scan: the one assumption
    this reader makes beyond hwloc's), and ids and sizes, only used for display, are read lazily.
    """
    base = "/sys/devices/system/cpu"
    online = fs.read_list(base + "/online")
    present = listed = 0
    for name in fs.listdir(base):
        if not name.startswith("cpu"):
            continue
        num = name[3:]
        if not num.isdigit():
            continue
        cpu = int(num)
        listed |= 1 << cpu  # hwloc's complete cpuset: every CPU sysfs lists, offline ones too
        if online is not None:
            if not online >> cpu & 1:
                continue
        else:
            o = fs.read(f"{base}/cpu{cpu}/online")
            if o is not None and o.strip()[:1] == b"0":
                continue
        present |= 1 << cpu  # CPUs without a topology/ folder are taken out by _scan_cpus

    while present:
        try:
            return present, listed, _scan_cpus(fs, present)
        except _NoTopology as e:  # rare: an online CPU the kernel shows no topology for (hwloc skips it)
            present &= ~(1 << e.cpu)
    return present, listed, []


class _NoTopology(Exception):
    def __init__(self, cpu: int):
        self.cpu = cpu


def _scan_cpus(fs: FS, present: int) -> list[tuple]:
    cpu_dir = fs.at("/sys/devices/system/cpu")
    try:
        return _scan_cpus_at(fs, cpu_dir, present)
    finally:
        cpu_dir.close()


def _scan_cpus_at(fs: FS, at: FS, present: int) -> list[tuple]:
    """The per-CPU walk of look_sysfscpu; paths are relative to sys/devices/system/cpu."""
    base = "/sys/devices/system/cpu"
    objs: list[tuple] = []

    # new (core_cpus, package_cpus) or old (thread_siblings, core_siblings) file names
    lowest = first(present)
    old = not (at.exists(f"cpu{lowest}/topology/package_cpus") or at.exists(f"cpu{lowest}/topology/core_cpus"))
    core_file = "thread_siblings" if old else "core_cpus"
    pkg_file = "core_siblings" if old else "package_cpus"
    thread_with_coreid = -1 if _is_amd_with_compute_units(fs) else 0
    s390 = _arch(fs).startswith("s390")

    seen_core = 0  # CPUs already in a core (or cluster, die) made by an earlier CPU
    seen_cluster = 0
    seen_die = 0
    seen_pkg = 0
    made_with: dict[int, int] = {}  # CPU -> how many caches holding it earlier CPUs made
    kinds: dict[tuple, tuple[str, int | None]] = {}  # a cache's shape -> its (type, level): see below
    read_mask = at.read_mask
    for i in bits(present):
        bit = 1 << i
        topo = f"cpu{i}/topology/"
        notfirst_core = notfirst_cluster = notfirst_die = False
        if seen_core & bit and thread_with_coreid != 1:
            coreset = None  # a sibling of an earlier CPU: hwloc reads its set and skips it
            notfirst_core = notfirst_cluster = notfirst_die = True
        else:
            coreset = read_mask(topo + core_file)
            if coreset is None and not at.exists(topo):
                raise _NoTopology(i)
        if coreset is not None:
            coreset &= present
            seen_core |= coreset
            core_id = None
            if thread_with_coreid == -1 and weight(coreset) > 1:
                # AMD compute units: siblings with different core ids are separate cores
                core_id = at.read_int(topo + "core_id")
                sib = first(coreset)
                if sib == i:
                    sib = first(coreset & ~((bit << 1) - 1))
                thread_with_coreid = int(at.read_int(f"cpu{sib}/topology/core_id") != core_id)
            if first(coreset) != i:
                notfirst_core = notfirst_cluster = notfirst_die = True
            if not notfirst_core or thread_with_coreid == 1:
                idx = Lazy(fs.read_int, f"{base}/{topo}core_id") if core_id is None else core_id
                objs.append(("core", idx, bit if thread_with_coreid == 1 else coreset, None))

        clusterset = dieset = None
        if not notfirst_core:
            if seen_cluster & bit:
                notfirst_cluster = notfirst_die = True
            else:
                clusterset = read_mask(topo + "cluster_cpus")
            if clusterset is not None:
                clusterset &= present
                seen_cluster |= clusterset
                if weight(clusterset) == 1:
                    clusterset = None
                elif first(clusterset) != i:
                    clusterset = None
                    notfirst_cluster = notfirst_die = True
        if not notfirst_cluster:
            if seen_die & bit:
                notfirst_die = True
            else:
                dieset = read_mask(topo + "die_cpus")
            if dieset is not None:
                dieset &= present
                seen_die |= dieset
                if weight(dieset) == 1:
                    dieset = None
                elif first(dieset) != i:
                    dieset = None
                    notfirst_die = True
                if clusterset is not None and dieset is not None and dieset == clusterset:
                    clusterset = None
        if not notfirst_die and not seen_pkg & bit:
            pkgset = read_mask(topo + pkg_file)
            if pkgset is not None:
                pkgset &= present
                seen_pkg |= pkgset
                if clusterset is not None and pkgset == clusterset:
                    clusterset = None
                if dieset is not None and pkgset == dieset:
                    dieset = None  # a die that is the whole package: hwloc shows none
                if first(pkgset) == i:
                    objs.append(("package", Lazy(fs.read_int, f"{base}/{topo}physical_package_id"), pkgset, None))
        if clusterset is not None:
            objs.append(("cluster", Lazy(fs.read_int, f"{base}/{topo}cluster_id"), clusterset, None))
        if dieset is not None:
            objs.append(("die", Lazy(fs.read_int, f"{base}/{topo}die_id"), dieset, None))

        if s390:  # books and drawers, made only when their id is readable (as hwloc does)
            for kind in ("book", "drawer"):
                kset = read_mask(f"{topo}{kind}_siblings")
                if kset is None:
                    break
                kset &= present
                if first(kset) == i:
                    kid = at.read_int(f"{topo}{kind}_id")
                    if kid is not None:
                        objs.append((kind, kid, kset, None))

        objs.append(("pu", i, bit, None))

        # Caches: this CPU's cache/index0..9. An index names a different cache on different cores
        # when the cores list different caches (an L2 shared by two cores that the other cores
        # lack, L1s listed for some cores only), so no index is assumed to mean the same cache on
        # a CPU that lists other indexes. A cache is made by the first CPU of its set. A CPU whose
        # caches were all made by earlier CPUs (as many of those hold it as it lists) is not read
        # further: hwloc reads those files only to skip them.
        #
        # A new cache's type and level are read once per shape: the indexes its CPU lists, its
        # index, how many CPUs share it and whether they are exactly that CPU's core. The kernel
        # lists a CPU's caches by level, data before instruction (cacheinfo), so CPUs listing the
        # same indexes have the same caches there, and the sharing tells apart what a machine with
        # uneven caches could still mix up. That halves the files a many-core machine's scan opens
        # (256 PUs: ~1550 -> ~900). Hazard: two cores listing as many caches, shared alike at every
        # index, but at different levels (one with an L2 and no L3, the other with an L3 and no
        # L2), would be given the first one's levels; no kernel is known to show such a machine.
        names = at.listdir(f"cpu{i}/cache")
        listed = tuple(j for j in range(10) if f"index{j}" in names)
        if made_with.get(i, 0) == len(listed):
            continue
        cache = f"cpu{i}/cache/index"
        for j in listed:
            cacheset = read_mask(f"{cache}{j}/shared_cpu_map")
            if cacheset is None:
                continue
            if not cacheset:  # ia64: an empty map means the core's CPUs
                alt = read_mask(topo + core_file)
                if alt is not None:
                    cacheset = alt
            cacheset &= present
            if first(cacheset) != i:
                continue
            for c in bits(cacheset):
                made_with[c] = made_with.get(c, 0) + 1
            shape = (listed, j, weight(cacheset), cacheset == coreset)
            known = kinds.get(shape)
            if known is None:
                ctype = (at.read(f"{cache}{j}/type") or b"Unified").strip().decode()
                level = None if ctype.startswith("Instruction") else at.read_int(f"{cache}{j}/level")
                known = kinds[shape] = (ctype, level)
            ctype, level = known
            if ctype.startswith("Instruction"):
                continue  # hwloc ignores instruction caches by default
            if level is None or not 1 <= level <= 5:
                continue
            size = Lazy(fs.read_int, f"{base}/{cache}{j}/size", 1024)
            cid = Lazy(fs.read_int, f"{base}/{cache}{j}/id")
            objs.append((f"l{level}", cid, cacheset, {"size": size, "type": ctype}))
    return objs


