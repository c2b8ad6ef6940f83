"""The machine's hardware as hwloc's Linux backend sees it, read from sysfs and procfs under a root.

Pure and quick to import: the standard library only (no docker, requests or structlog here).

``read(fsroot)`` returns a :class:`Topology`: an hwloc-like tree of :class:`Obj`
(machine > package > [NUMA group when a NUMA node splits a package] > die > cluster > L3 > L2 > core > PU),
restricted to the CPUs a process can really get: online CPUs, less what the process's cgroup cpuset
excludes (cgroup v1, v2 or the old cpuset filesystem, found the way hwloc finds them), and, if asked,
less the kernel's isolated CPUs.

CPU sets are Python ints used as bitmasks (bit i = logical CPU i): fast to intersect and count.
The discovery follows hwloc 2.x's ``topology-linux.c`` (``look_sysfscpu``, ``look_sysfsnode`` and the
cgroup lookup), so the tree, hence the placement, equals hwloc's on the same folder.
"""

from __future__ import annotations

import os

from tesson.errors import UsageError

# Order of object kinds that share a cpuset: the first is the parent of the next. Groups (a NUMA
# node's memory group, a cluster) are placed between the kinds they sit between in hwloc's trees.
RANK = {
    "machine": 0,
    "distance": 2,  # hwloc's Groups of NUMA nodes close to each other by SLIT distance
    "drawer": 3,  # s390 drawers and books (hwloc Groups)
    "book": 6,
    "package": 10,
    "numa": 15,  # the group hwloc makes for a NUMA node that does not match an existing object
    "die": 20,
    "cluster": 30,
    "l5": 35,
    "l4": 40,
    "l3": 50,
    "l2": 60,
    "l1": 70,
    "core": 80,
    "pu": 90,
}
GROUPS = ("numa", "cluster", "book", "drawer", "distance")  # all are hwloc Group objects


def level_type(kind: str) -> str:
    """The level an object kind sits at: hwloc Groups of different kinds are different levels."""
    return "group:" + kind if kind in GROUPS else kind


def bits(mask: int) -> list[int]:
    """The set bits of ``mask``, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def mask_of(ids) -> int:
    m = 0
    for i in ids:
        m |= 1 << i
    return m


def _first(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def _weight(mask: int) -> int:
    return bin(mask).count("1")


class _Lazy:
    """A number read from a sysfs file only when someone asks for it (ids and sizes for display)."""

    __slots__ = ("fs", "path", "scale")

    def __init__(self, fs: "_FS", path: str, scale: int = 1):
        self.fs, self.path, self.scale = fs, path, scale

    def get(self) -> int:
        v = self.fs.read_int(self.path)
        return -1 if v is None else v * self.scale


class Obj:
    """One object of the tree: a kind, its OS index (or -1), its allowed cpuset, children."""

    __slots__ = ("kind", "_os_index", "cpuset", "complete", "children", "parent", "_attrs", "memory", "depth")

    def __init__(self, kind: str, os_index, cpuset: int, attrs: dict | None = None, complete: int | None = None):
        self.kind = kind
        self._os_index = os_index
        self.cpuset = cpuset  # allowed CPUs (empty for an object kept only for its memory)
        # all its CPUs as the kernel lists them (before the cgroup/isolation restriction; a NUMA
        # node's group may also list online CPUs that have no topology)
        self.complete = cpuset if complete is None else complete
        self.children: list[Obj] = []
        self.parent: Obj | None = None
        self._attrs = attrs
        self.memory: list[NumaNode] = []  # NUMA nodes attached here (for display)
        self.depth = 0  # the index of this object's level, as hwloc numbers levels

    @property
    def os_index(self) -> int:
        v = self._os_index
        if v.__class__ is _Lazy:
            v = self._os_index = v.get()
        return v

    @property
    def attrs(self) -> dict:
        a = self._attrs
        if a is None:
            a = self._attrs = {}
        for k, v in a.items():
            if v.__class__ is _Lazy:
                a[k] = v.get()
        return a

    @property
    def cpus(self) -> list[int]:
        return bits(self.cpuset)

    @property
    def weight(self) -> int:
        return _weight(self.cpuset)

    def walk(self) -> list["Obj"]:
        """This object and all below it, in hwloc's logical (depth-first) order."""
        out = []
        stack = [self]
        while stack:
            o = stack.pop()
            out.append(o)
            if o.children:
                stack.extend(reversed(o.children))
        return out

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        from tesson import cpulist

        return f"<{self.kind} P#{self.os_index} cpus={cpulist.format(self.cpus)}>"


class NumaNode:
    """A NUMA node: its OS index, allowed CPUs (maybe none) and memory size.

    ``cpuset`` is its locality as hwloc reports it: a memory-only node gets the CPUs of its HMAT
    initiators or of its closest nodes. ``own`` holds only the CPUs the kernel lists in its cpumap.
    """

    __slots__ = ("id", "cpuset", "own", "memory_bytes")

    def __init__(self, id: int, cpuset: int, memory_bytes: int):
        self.id = id
        self.cpuset = cpuset
        self.own = cpuset
        self.memory_bytes = memory_bytes

    @property
    def cpus(self) -> list[int]:
        return bits(self.cpuset)

    def __repr__(self) -> str:  # pragma: no cover
        return f"<NumaNode {self.id} cpus={self.cpus} mem={self.memory_bytes}>"


class Topology:
    """The tree plus quick views of it (lists are in hwloc's logical order)."""

    def __init__(self, root: Obj, numa_nodes: list[NumaNode], fsroot: str):
        self.root = root
        self.fsroot = fsroot
        self.numa_nodes = numa_nodes  # sorted by id, memory-only nodes included
        objs = root.walk()
        self.levels = _connect_levels(root, objs)
        self.cpuset = root.cpuset
        self.pus = bits(root.cpuset)
        # objects with allowed CPUs (the tree also keeps CPU-less ones that hold memory, as hwloc does)
        self.cores = [o for o in objs if o.kind == "core" and o.cpuset]
        self.packages = [o for o in objs if o.kind == "package" and o.cpuset]
        self.l3 = [o for o in objs if o.kind == "l3" and o.cpuset]
        self.objects = objs

    def objects_of(self, kind: str) -> list[Obj]:
        """The objects of a kind that hold allowed CPUs, in logical order."""
        return [o for o in self.objects if o.kind == kind and o.cpuset]

    def depth_of(self, kind: str) -> int | None:
        """The depth of the level of ``kind`` objects, or None when the machine has none."""
        for d, level in enumerate(self.levels):
            if level_type(level[0].kind) == kind:
                return d
        return None

    def mems_for(self, cpus) -> list[int]:
        """Sorted ids of the NUMA nodes these CPUs belong to."""
        m = cpus if isinstance(cpus, int) else mask_of(cpus)
        return [n.id for n in self.numa_nodes if n.cpuset & m]

    def to_json(self) -> dict:
        """The JSON document of ``tesson topology --format json`` (a dict, ready for json.dump)."""
        return {
            "pus": self.pus,
            "cores": [{"pus": c.cpus} for c in self.cores],
            "numa_nodes": [
                {"id": n.id, "cpus": n.cpus, "memory_bytes": n.memory_bytes} for n in self.numa_nodes
            ],
            "packages": [{"id": p.os_index, "cpus": p.cpus} for p in self.packages],
            "l3": [{"cpus": c.cpus} for c in self.l3],
        }


# --------------------------------------------------------------------------------------------------
# File access under the root


class _FS:
    """Reads files under the root (``p`` is an absolute path on the machine being read)."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def read(self, p: str) -> bytes | None:
        try:
            fd = os.open(self.root + p, os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.read(fd, 65536)
            if len(data) == 65536:  # big procfs files only; sysfs ones fit in one read
                chunks = [data]
                while True:
                    b = os.read(fd, 65536)
                    if not b:
                        break
                    chunks.append(b)
                data = b"".join(chunks)
            return data
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_head(self, p: str, size: int = 8192) -> bytes | None:
        try:
            fd = os.open(self.root + p, os.O_RDONLY)
        except OSError:
            return None
        try:
            return os.read(fd, size)
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_mask(self, p: str) -> int | None:
        """A kernel cpumask file ("00000000,0000000f") as an int, or None."""
        data = self.read(p)
        if data is None:
            return None
        data = data.split(b"\0", 1)[0].strip().replace(b",", b"")
        if not data:
            return 0
        try:
            return int(data, 16)
        except ValueError:
            return None

    def read_list(self, p: str) -> int | None:
        """A kernel cpulist file ("0-3,8") as a mask, or None."""
        data = self.read(p)
        if data is None:
            return None
        return _parse_list(data)

    def read_int(self, p: str) -> int | None:
        data = self.read(p)
        if data is None:
            return None
        try:
            return int(data.strip().split()[0].rstrip(b"K"))
        except (ValueError, IndexError):
            return None

    def exists(self, p: str) -> bool:
        return os.path.exists(self.root + p)

    def listdir(self, p: str) -> list[str]:
        try:
            return os.listdir(self.root + p)
        except OSError:
            return []


class _At(_FS):
    """Reads relative to an open directory (shorter path walks for the many per-CPU files)."""

    def __init__(self, fs: _FS, path: str):
        super().__init__(fs.root + path)
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        os.close(self.fd)

    def read(self, p: str) -> bytes | None:
        try:
            fd = os.open(p, os.O_RDONLY, dir_fd=self.fd)
        except OSError:
            return None
        try:
            return os.read(fd, 65536)
        except OSError:
            return None
        finally:
            os.close(fd)

    def exists(self, p: str) -> bool:
        return os.path.exists(self.root + "/" + p)


def _parse_list(data: bytes) -> int | None:
    m = 0
    for part in data.split(b"\0", 1)[0].strip().split(b","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition(b"-")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if b >= a:
                    m |= ((1 << (b - a + 1)) - 1) << a
            else:
                m |= 1 << int(lo)
        except ValueError:
            return None
    return m


# --------------------------------------------------------------------------------------------------
# cgroup / cpuset: which CPUs and memory nodes the process may use (hwloc_linux__get_allowed_resources)


def _unescape_mount(field: str) -> str:
    """/proc/mounts writes a space in a path as \\040 (octal), like getmntent() undoes it."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _cgroup_mount(fs: _FS) -> tuple[str, str] | None:
    """(kind, mount point) of the cpuset controller: 'cgroup2', 'cgroup1' or 'cpuset' (old cpuset fs)."""
    if fs.exists("/sys/fs/cgroup/cpuset.cpus.effective"):
        return "cgroup2", "/sys/fs/cgroup"
    if fs.exists("/sys/fs/cgroup/cpuset/cpuset.cpus"):
        return "cgroup1", "/sys/fs/cgroup/cpuset"
    if fs.exists("/dev/cpuset/cpus"):
        return "cpuset", "/dev/cpuset"
    mounts = fs.read("/proc/mounts")
    if not mounts:
        return None
    for line in mounts.decode(errors="replace").splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        mnt, fstype, opts = _unescape_mount(f[1]), f[2], f[3].split(",")
        if fstype == "cgroup2":
            ctrls = fs.read(mnt + "/cgroup.controllers")
            if ctrls and "cpuset" in ctrls.decode(errors="replace").split("\n", 1)[0].split(" "):
                return "cgroup2", mnt
        elif fstype == "cpuset":
            return "cpuset", mnt
        elif fstype == "cgroup" and "cpuset" in opts:
            return ("cpuset" if "noprefix" in opts else "cgroup1"), mnt
    return None


def _cgroup_name(fs: _FS) -> str | None:
    data = fs.read("/proc/self/cpuset")
    if data:
        return data.decode(errors="replace").split("\n", 1)[0]
    data = fs.read("/proc/self/cgroup")
    if data:
        for line in data.decode(errors="replace").splitlines():
            colon = line.find(":")
            if colon < 0:
                continue
            rest = line[colon:]
            if rest.startswith(":cpuset:"):
                return rest[8:]
            if rest.startswith("::"):
                return rest[2:]
    return None


def _allowed_from_cgroup(fs: _FS) -> tuple[int | None, int | None]:
    """(allowed cpus, allowed mems) from the process's cpuset cgroup; None means no restriction."""
    found = _cgroup_mount(fs)
    if not found:
        return None, None
    kind, mnt = found
    name = _cgroup_name(fs)
    if name is None:
        return None, None
    base = mnt + name
    out = []
    for attr in ("cpus", "mems"):
        if kind == "cgroup2":
            cands = [f"{base}/cpuset.{attr}.effective"]
        elif kind == "cgroup1":
            # hwloc reads cpuset.cpus (offline CPUs are removed anyway); effective_* only if it is missing
            cands = [f"{base}/cpuset.{attr}", f"{base}/cpuset.effective_{attr}"]
        else:
            cands = [f"{base}/{attr}"]
        value = None
        for c in cands:
            value = fs.read_list(c)
            if value is not None:
                break
        out.append(value)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------------
# Discovery


def _is_amd_with_compute_units(fs: _FS) -> bool:
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


def _arch(fs: _FS) -> str:
    """The machine's architecture: a dump's proc/hwloc-nofile-info says it, else this kernel's."""
    data = fs.read("/proc/hwloc-nofile-info")
    if data:
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("Architecture: "):
                return line[len("Architecture: "):].strip()
    return os.uname().machine


def _discover_cpus(fs: _FS):
    """Return (present cpuset, listed cpuset, list of (kind, os_index, cpuset, attrs)) like hwloc's
    look_sysfscpu.

    Present CPUs are the online ones that have a ``topology/`` folder. Every cpuset read is restricted
    to them; an object is made by the first present CPU of its set. Reads whose only possible outcome
    is "not the first CPU of a set already seen" are skipped (hwloc makes them, then ignores them),
    and ids and sizes, only used for display, are read lazily.
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


def _scan_cpus(fs: _FS, present: int) -> list[tuple]:
    cpu_dir = _At(fs, "/sys/devices/system/cpu")
    try:
        return _scan_cpus_at(fs, cpu_dir, present)
    finally:
        cpu_dir.close()


def _scan_cpus_at(fs: _FS, at: _At, present: int) -> list[tuple]:
    """The per-CPU walk of look_sysfscpu; paths are relative to sys/devices/system/cpu."""
    base = "/sys/devices/system/cpu"
    objs: list[tuple] = []

    # new (core_cpus, package_cpus) or old (thread_siblings, core_siblings) file names
    first = _first(present)
    old = not (at.exists(f"cpu{first}/topology/package_cpus") or at.exists(f"cpu{first}/topology/core_cpus"))
    core_file = "thread_siblings" if old else "core_cpus"
    pkg_file = "core_siblings" if old else "package_cpus"
    thread_with_coreid = -1 if _is_amd_with_compute_units(fs) else 0
    s390 = _arch(fs).startswith("s390")

    seen_core = 0  # CPUs already in a core (or cluster, die) made by an earlier CPU
    seen_cluster = 0
    seen_die = 0
    seen_pkg = 0
    seen_cache: dict[int, int] = {}  # cache index -> CPUs already in a cache of that index
    private_caches: dict[tuple, tuple] = {}  # (index, True) -> (level, type) of per-core caches
    core_of: dict[int, int] = {}  # CPU -> its core's CPUs
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
            for c in bits(coreset):
                core_of[c] = coreset
            core_id = None
            if thread_with_coreid == -1 and _weight(coreset) > 1:
                # AMD compute units: siblings with different core ids are separate cores
                core_id = at.read_int(topo + "core_id")
                sib = _first(coreset)
                if sib == i:
                    sib = _first(coreset & ~((bit << 1) - 1))
                thread_with_coreid = int(at.read_int(f"cpu{sib}/topology/core_id") != core_id)
            if _first(coreset) != i:
                notfirst_core = notfirst_cluster = notfirst_die = True
            if not notfirst_core or thread_with_coreid == 1:
                idx = _Lazy(fs, f"{base}/{topo}core_id") if core_id is None else core_id
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
                if _weight(clusterset) == 1:
                    clusterset = None
                elif _first(clusterset) != i:
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
                if _weight(dieset) == 1:
                    dieset = None
                elif _first(dieset) != i:
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
                if _first(pkgset) == i:
                    objs.append(("package", _Lazy(fs, f"{base}/{topo}physical_package_id"), pkgset, None))
        if clusterset is not None:
            objs.append(("cluster", _Lazy(fs, f"{base}/{topo}cluster_id"), clusterset, None))
        if dieset is not None:
            objs.append(("die", _Lazy(fs, f"{base}/{topo}die_id"), dieset, None))

        if s390:  # books and drawers, made only when their id is readable (as hwloc does)
            for kind in ("book", "drawer"):
                kset = read_mask(f"{topo}{kind}_siblings")
                if kset is None:
                    break
                kset &= present
                if _first(kset) == i:
                    kid = at.read_int(f"{topo}{kind}_id")
                    if kid is not None:
                        objs.append((kind, kid, kset, None))

        objs.append(("pu", i, bit, None))

        cache = f"cpu{i}/cache/index"
        core_of_i = coreset if coreset is not None else core_of.get(i, bit)
        for j in range(10):
            seen = seen_cache.get(j, 0)
            if seen & bit:
                continue  # in a cache of this index that an earlier CPU made
            cacheset = read_mask(f"{cache}{j}/shared_cpu_map")
            if cacheset is None:
                break  # no such index: the kernel numbers them without gaps, nothing further
            if not cacheset:  # ia64: an empty map means the core's CPUs
                alt = read_mask(topo + core_file)
                if alt is not None:
                    cacheset = alt
            cacheset &= present
            seen_cache[j] = seen | cacheset
            if _first(cacheset) != i:
                continue
            # A cache private to its core is read once per index: the level and type of index j
            # of the next core's private cache are the same (they only label the text tree; a
            # private cache changes no placement). Shared caches are always read.
            key = (j, cacheset == core_of_i)
            known = private_caches.get(key) if key[1] else None
            if known is None:
                ctype = (at.read(f"{cache}{j}/type") or b"Unified").strip().decode()
                level = at.read_int(f"{cache}{j}/level")
                known = (level, ctype)
                if key[1]:
                    private_caches[key] = known
            level, ctype = known
            if ctype.startswith("Instruction") or level is None or not 1 <= level <= 5:
                continue  # hwloc ignores instruction caches by default
            size = _Lazy(fs, f"{base}/{cache}{j}/size", 1024)
            cid = _Lazy(fs, f"{base}/{cache}{j}/id")
            objs.append((f"l{level}", cid, cacheset, {"size": size, "type": ctype}))
    return objs


def _meminfo_total(fs: _FS, path: str) -> int:
    data = fs.read(path)
    if not data:
        return 0
    for line in data.decode(errors="replace").splitlines():
        if "MemTotal:" in line:
            f = line.split("MemTotal:", 1)[1].split()
            try:
                return int(f[0]) * 1024
            except (ValueError, IndexError):
                return 0
    return 0


def _discover_numa(fs: _FS) -> tuple[list[NumaNode] | None, list[tuple[int, frozenset]]]:
    """The NUMA nodes (None when sysfs shows none) and hwloc's distance groups (cpuset, node ids)."""
    base = "/sys/devices/system/node"
    ids_mask = fs.read_list(base + "/online")
    if ids_mask is not None and ids_mask:
        ids = bits(ids_mask)
    else:
        ids = sorted(
            int(n[4:]) for n in fs.listdir(base) if n.startswith("node") and n[4:].isdigit()
        )
    if not ids:
        return None, []
    slots: list[NumaNode | None] = []  # one per listed id; None for a node hwloc could not make
    seen = 0
    for nid in ids:
        cpuset = fs.read_mask(f"{base}/node{nid}/cpumap")
        if cpuset is None or cpuset & seen:
            slots.append(None)  # unreadable, or overlapping an earlier node: hwloc drops it
            continue
        seen |= cpuset
        slots.append(NumaNode(nid, cpuset, _meminfo_total(fs, f"{base}/node{nid}/meminfo")))
    if not any(slots):
        return None, []
    distances = _node_distances(fs, ids)
    _fix_numa_locality(fs, ids, slots, distances)
    return [n for n in slots if n is not None], _distance_groups(slots, distances)


def _node_distances(fs: _FS, ids: list[int]) -> list[list[int]] | None:
    """The SLIT matrix from nodeN/distance (hwloc_parse_nodes_distances), or None."""
    if len(ids) < 2:
        return None
    matrix = []
    for nid in ids:
        data = fs.read(f"/sys/devices/system/node/node{nid}/distance")
        if data is None:
            return None
        try:
            row = [int(x) for x in data.split(b"\0", 1)[0].split()[: len(ids)]]
        except ValueError:
            return None
        if len(row) < len(ids):
            return None
        matrix.append(row)
    return matrix


def _fix_numa_locality(fs: _FS, ids: list[int], slots: list, distances) -> None:
    """Give NUMA nodes the CPUs hwloc gives them: HMAT initiators (nodeN/access0/initiators), then,
    for a node still without CPUs, the CPUs of its strictly closest nodes by SLIT distance
    (hwloc's read_node_initiators and fixup_cpuless_node_locality_from_distances)."""
    base = "/sys/devices/system/node"
    by_id = {n.id: n for n in slots if n is not None}

    def initiators(node) -> bool:
        names = fs.listdir(f"{base}/node{node.id}/access0/initiators")
        if not names and not fs.exists(f"{base}/node{node.id}/access0/initiators"):
            return False
        for name in names:
            if name.startswith("node") and name[4:].isdigit():
                other = by_id.get(int(name[4:]))
                if other is not None and other is not node:
                    node.cpuset |= other.cpuset
        return True

    for node in slots:
        if node is not None and node.cpuset:
            initiators(node)
    for i, node in enumerate(slots):
        if node is None or node.cpuset:
            continue
        if initiators(node) and node.cpuset:
            continue
        if not distances:
            continue
        row = distances[i]
        others = [j for j in range(len(slots)) if j != i and slots[j] is not None]
        if not others:
            continue
        low = min(row[j] for j in others)
        closest = [j for j in others if row[j] == low]
        if low <= row[i] or len(closest) == len(slots) - 1:
            continue  # no closer node, or all equally close: leave it without CPUs
        for j in closest:
            node.cpuset |= slots[j].cpuset


def _distance_groups(slots: list, matrix) -> list[tuple[int, frozenset]]:
    """hwloc's grouping of NUMA nodes by SLIT distance (hwloc__groups_by_distances, exact values):
    nodes linked, transitively, by the smallest distance form a Group; then the same over the groups
    with their averaged distances, and so on up. Returns (cpuset, node ids) of each group."""
    idx = [i for i, n in enumerate(slots) if n is not None]
    if not matrix or len(idx) <= 2:
        return []
    values = [[matrix[i][j] for j in idx] for i in idx]
    members = [(slots[i].cpuset, frozenset([slots[i].id])) for i in idx]
    out: list[tuple[int, frozenset]] = []
    _group_by_distance(values, members, out, check=True)
    return out


def _group_by_distance(values, members, out, check: bool) -> None:
    n = len(members)
    if n <= 2:
        return
    if check:  # symmetric, and each object strictly closest to itself
        for i in range(n):
            for j in range(i + 1, n):
                if values[i][j] != values[j][i] or values[i][j] <= values[i][i]:
                    return
    low = min(values[i][j] for i in range(n) for j in range(n) if i != j)
    gids = [0] * n
    gid, skipped = 1, 0
    for i in range(n):
        if gids[i]:
            continue
        gids[i], size, first = gid, 1, i
        while first is not None:
            newfirst = None
            for j in range(first, n):
                if gids[j] == gid:
                    for k in range(n):
                        if not gids[k] and values[j][k] == low:
                            gids[k] = gid
                            size += 1
                            if newfirst is None:
                                newfirst = k
            first = newfirst
        if size == 1:
            gids[i] = 0
            skipped += 1
            continue
        gid += 1
    count = gid - 1
    if count == 0 or (count == 1 and not skipped):
        return  # no pair at the smallest distance, or one group of everything: nothing to group
    sets = [0] * count
    nodes: list[frozenset] = [frozenset()] * count
    sizes = [0] * count
    for j in range(n):
        if gids[j]:
            g = gids[j] - 1
            sets[g] |= members[j][0]
            nodes[g] = nodes[g] | members[j][1]
            sizes[g] += 1
    groups = list(zip(sets, nodes))
    out.extend(groups)
    gvalues = [[0] * count for _ in range(count)]
    for i in range(n):
        if gids[i]:
            for j in range(n):
                if gids[j]:
                    gvalues[gids[i] - 1][gids[j] - 1] += values[i][j]
    for a in range(count):
        for b in range(count):
            gvalues[a][b] //= sizes[a] * sizes[b]
    _group_by_distance(gvalues, groups, out, check=False)


def _build_tree(present: int, listed: int, objs, numa_sets: list[int]) -> Obj:
    """Nest the objects by cpuset, as hwloc's insert-by-cpuset does (bigger sets first; for equal
    sets, the kind order of RANK). An object that overlaps another without nesting is refused, as
    hwloc refuses it."""
    root = Obj("machine", 0, present, None, listed)
    items = [Obj(kind, idx, cs, attrs) for kind, idx, cs, attrs in objs if cs]
    # NUMA nodes become groups that bring structure where they split something (hwloc's memory
    # groups); those equal to another object change nothing and are dropped later
    for raw in numa_sets:
        if raw & present and raw & listed != listed:  # hwloc memory groups have no index
            items.append(Obj("numa", -1, raw & present, None, raw & listed))
    rank = RANK
    items.sort(key=lambda o: (-_weight(o.complete), rank[o.kind]))
    owner: dict[int, Obj] = {}  # CPU -> the smallest object so far that holds it
    for obj in items:
        cpus = bits(obj.cpuset)
        parent = owner.get(cpus[0], root)
        if any(owner.get(c, root) is not parent for c in cpus):
            continue  # overlaps an object without nesting in it
        obj.parent = parent
        parent.children.append(obj)
        for c in cpus:
            owner[c] = obj
    stack = [root]
    while stack:
        o = stack.pop()
        if len(o.children) > 1:
            o.children.sort(key=lambda c: c.cpuset & -c.cpuset)
        stack.extend(o.children)
    return root


def _connect_levels(root: Obj, objs: list[Obj]) -> list[list[Obj]]:
    """Group the objects into levels the way hwloc's hwloc_connect_levels does; set each depth.

    ``objs``: root.walk(), parents before children.
    """
    lt = {k: level_type(k) for k in RANK}
    below: dict[int, set] = {}  # id(object) -> the level types found strictly below it
    for o in reversed(objs):  # children before parents
        if o.children:
            types = set()
            for c in o.children:
                types.add(lt[c.kind])
                types |= below[id(c)]
            below[id(o)] = types
        else:
            below[id(o)] = set()
    root.depth = 0
    levels = [[root]]
    frontier = list(root.children)
    while frontier:
        top = next((o for o in frontier if o.kind != "pu"), frontier[0])
        top_t = lt[top.kind]
        for o in frontier:
            t = lt[o.kind]
            if t != top_t and top_t in below[id(o)]:
                top, top_t = o, t
        level, rest = [], []
        for o in frontier:
            if lt[o.kind] == top_t:
                o.depth = len(levels)
                level.append(o)
                rest.extend(o.children)
            else:
                rest.append(o)
        levels.append(level)
        frontier = rest
    return levels


def _prune_groups(root: Obj) -> None:
    """Merge away groups that bring no structure: a group with the same CPUs and NUMA nodes as its
    parent or as its only child (memory groups that hwloc merges at insertion, hwloc's
    merge_useless_child for the others)."""
    nodesets: dict[int, frozenset] = {}
    for o in reversed(root.walk()):
        ids = frozenset(n.id for n in o.memory)
        for c in o.children:
            ids |= nodesets[id(c)]
        nodesets[id(o)] = ids

    stack = [root]
    while stack:
        o = stack.pop()
        changed = True
        while changed:
            changed = False
            new = []
            for c in o.children:
                if c.kind not in GROUPS or not c.complete:
                    new.append(c)
                    continue
                if c.kind == "distance":
                    same_parent = len(o.children) == 1 and c.complete == o.complete and nodesets[id(c)] == nodesets[id(o)]
                    same_child = (c.children[0] if len(c.children) == 1 and not c.memory
                                  and c.children[0].complete == c.complete else None)
                else:
                    same_parent = c.complete == o.complete
                    same_child = next((g for g in c.children if g.complete == c.complete), None)
                if not same_parent and same_child is None:
                    new.append(c)
                    continue
                # merged away: its NUMA nodes go to the object it duplicates
                (o if same_parent else same_child).memory[:0] = c.memory
                for g in c.children:
                    g.parent = o
                new.extend(c.children)
                changed = True
            if changed:
                new.sort(key=lambda x: _first(x.complete) if x.complete else 1 << 30)
                o.children = new
        stack.extend(o.children)


def _restrict(root: Obj, allowed: int) -> None:
    """Remove disallowed PUs (hwloc's default without INCLUDE_DISALLOWED): objects left without CPUs
    go, unless they hold allowed memory (hwloc keeps a package whose NUMA node may still be used)."""
    keep: set[int] = set()
    for o in reversed(root.walk()):  # children first
        if o.cpuset & allowed or o.memory or any(id(c) in keep for c in o.children):
            keep.add(id(o))
    stack = [root]
    while stack:
        o = stack.pop()
        o.cpuset &= allowed
        o.children = [c for c in o.children if id(c) in keep]
        stack.extend(o.children)


def _attach_memory(root: Obj, numa: list[NumaNode]) -> None:
    """For display: hang each NUMA node where hwloc does: going down from the machine, on the first
    object with exactly its CPUs, else on the smallest object that holds them (memory-only: root)."""
    for n in numa:
        target = root
        if n.cpuset:
            while True:
                child = next((c for c in target.children if c.cpuset & n.cpuset == n.cpuset), None)
                if child is None:
                    break
                target = child
                if child.cpuset == n.cpuset:
                    break
        else:  # no CPUs at all: hwloc gives it a memory Group of its own under the machine
            target = Obj("numa", -1, 0)
            target.parent = root
            root.children.append(target)
        target.memory.append(n)


def _subtree_nodes(obj: Obj) -> frozenset:
    return frozenset(n.id for o in obj.walk() for n in o.memory)


def _insert_distance_group(root: Obj, cpuset: int, node_ids: frozenset) -> None:
    """Insert one of hwloc's distance Groups by its CPUs (and, where the CPUs are the same as an
    object's, by its NUMA nodes), adopting the children it covers."""
    parent = root
    while True:
        if parent.cpuset == cpuset:
            have = _subtree_nodes(parent)
            if have == node_ids:
                return  # the same object: merged
            if not node_ids < have:
                return  # hwloc would refuse it (conflicting node sets)
        child = next((c for c in parent.children if c.cpuset & cpuset == cpuset and c.cpuset), None)
        if child is None or (child.cpuset == cpuset and node_ids > _subtree_nodes(child)):
            break
        parent = child
    group = Obj("distance", -1, cpuset)
    inside = [c for c in parent.children if c.cpuset and c.cpuset & cpuset == c.cpuset]
    if any(c.cpuset & cpuset and c not in inside for c in parent.children):
        return  # overlaps a child without containing it: hwloc refuses such a group
    parent.children = [c for c in parent.children if c not in inside] + [group]
    parent.children.sort(key=lambda c: _first(c.complete) if c.complete else 1 << 30)
    group.parent = parent
    group.children = inside
    for c in inside:
        c.parent = group


def read(fsroot: str = "/", include_isolated: bool = True) -> Topology:
    """Read the topology of the machine whose ``sys/`` and ``proc/`` are under ``fsroot``.

    Raises UsageError for a root without ``sys/``, a machine without CPUs in sysfs, or an empty set
    of allowed CPUs.
    """
    fsroot = fsroot or "/"
    if not os.path.isdir(os.path.join(fsroot, "sys")):
        raise UsageError(f"no sys/ under {fsroot!r}: --fsroot must name a folder holding sys/ and proc/")
    fs = _FS(fsroot)
    present, listed, objs = _discover_cpus(fs)
    if not present:
        raise UsageError(
            f"no online CPU with topology information in {os.path.join(fsroot, 'sys/devices/system/cpu')}"
        )

    allowed_cpus, allowed_mems = _allowed_from_cgroup(fs)
    allowed = present if allowed_cpus is None else present & allowed_cpus
    if not include_isolated:
        iso = fs.read_list("/sys/devices/system/cpu/isolated")
        if iso:
            allowed &= ~iso
    if not allowed:
        why = " and not isolated" if not include_isolated else ""
        raise UsageError(f"no CPU is both online and allowed by this process's cpuset{why} (fsroot {fsroot!r})")

    numa, groups = _discover_numa(fs)
    if numa is None:
        numa = [NumaNode(0, present, _meminfo_total(fs, "/proc/meminfo"))]
    raw = [n.cpuset for n in numa]
    for n in numa:
        n.cpuset &= present
        n.own &= present
    root = _build_tree(present, listed, objs, raw)
    if allowed_mems is not None:
        numa = [n for n in numa if allowed_mems >> n.id & 1]
    numa.sort(key=lambda n: n.id)
    _attach_memory(root, numa)
    for cpuset, node_ids in groups:  # after the NUMA nodes, as hwloc adds them
        if cpuset & present:
            _insert_distance_group(root, cpuset & present, node_ids)
    _prune_groups(root)
    if allowed != present:
        _restrict(root, allowed)
        for n in numa:
            n.cpuset &= allowed
            n.own &= allowed
    return Topology(root, numa, fsroot)
