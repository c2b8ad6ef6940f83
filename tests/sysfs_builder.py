"""Build small fake ``sys/`` + ``proc/`` trees, laid out the way the Linux kernel shows them.

For what the real dumps lack: isolated CPUs, a cgroup v1 / v2 / old-cpuset restriction, missing cache
files, old sibling file names. hwloc reads these trees too, so tests can still ask hwloc for the answer.

CPU numbering follows Linux on x86: the first threads of all cores come first, then the second threads
(cpu = thread * total_cores + package * cores + core).
"""

from __future__ import annotations

from pathlib import Path


def mask(ids, ncpus: int) -> str:
    """The kernel's cpumask text: 32-bit hex words, highest first, comma-separated."""
    value = 0
    for i in ids:
        value |= 1 << i
    words = max(1, (ncpus + 31) // 32)
    return ",".join(f"{(value >> (32 * w)) & 0xFFFFFFFF:08x}" for w in reversed(range(words)))


def cpulist(ids) -> str:
    ids = sorted(set(ids))
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)


def _w(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


class Dev:
    """An I/O device as the kernel shows it: ``name`` in class/``cls`` (net or block); on the PCI
    function ``pci`` (DDDD:BB:DD.F, a device under a host bridge of its own, with ``local_cpus`` and
    ``numa_node``), or without PCI (``numa_node`` in its device folder), or ``virtual``."""

    def __init__(self, name, cls="net", pci=None, local_cpus=None, numa_node=-1, virtual=False, class_id=0x020000):
        self.name, self.cls, self.pci, self.local_cpus = name, cls, pci, local_cpus
        self.numa_node, self.virtual, self.class_id = numa_node, virtual, class_id


def _device(root: Path, dev: "Dev", cpumask) -> None:
    """Write one device: its folder under sys/devices and the class/bus symlinks hwloc follows."""
    if dev.virtual:
        rel = f"devices/virtual/{dev.cls}/{dev.name}"
    elif dev.pci:
        domain, bus = dev.pci.split(":")[:2]
        fn = root / f"sys/devices/pci{domain}:{bus}/{dev.pci}"
        _w(fn / "class", f"0x{dev.class_id:06x}")
        _w(fn / "vendor", "0x8086")
        _w(fn / "device", "0x1234")
        _w(fn / "numa_node", str(dev.numa_node))
        _w(fn / "local_cpus", cpumask(dev.local_cpus or []))
        (fn / "config").write_bytes(bytes(64))
        link = root / f"sys/bus/pci/devices/{dev.pci}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(f"../../../devices/pci{domain}:{bus}/{dev.pci}")
        rel = f"devices/pci{domain}:{bus}/{dev.pci}/{dev.cls}/{dev.name}"
    else:
        plat = root / f"sys/devices/platform/dev-{dev.name}"
        _w(plat / "numa_node", str(dev.numa_node))
        rel = f"devices/platform/dev-{dev.name}/{dev.cls}/{dev.name}"
    d = root / "sys" / rel
    d.mkdir(parents=True, exist_ok=True)
    if not dev.virtual and not dev.pci:
        (d / "device").symlink_to("../..")
    elif dev.pci:
        (d / "device").symlink_to("../..")
    cls_dir = root / f"sys/class/{dev.cls}"
    cls_dir.mkdir(parents=True, exist_ok=True)
    (cls_dir / dev.name).symlink_to(f"../../{rel}")


def build(
    root: Path,
    *,
    packages: int = 2,
    cores: int = 2,
    threads: int = 2,
    numa_per_package: int = 1,
    caches: bool = True,
    l3_per: str = "package",  # "package" or "numa"
    offline=(),
    isolated=(),
    cgroup: str | None = None,  # None, "v1", "v2", "cpuset" (old cpuset fs), "v1-mounts" (found via
    # mounts), "v1-noprefix" (a v1 cpuset hierarchy with the old file names, found via mounts)
    cgroup_cpus=None,
    cgroup_mems=None,
    old_names: bool = False,
    no_topology=(),  # online CPUs the kernel shows no topology/ folder for (hwloc skips them)
    cpuless_nodes: int = 0,  # extra memory-only NUMA nodes, numbered after the others
    distances=None,  # SLIT matrix over all nodes (nodeN/distance)
    initiators=None,  # {node: [nodes whose CPUs access it best]} (HMAT nodeN/access0/initiators)
    books: int = 0,  # s390: packages per book (0: none), with proc/hwloc-nofile-info saying s390x
    drawers: int = 0,  # s390: books per drawer
    mem_kb: int = 4 * 1024 * 1024,
    nvidia_gpu_nodes=None,  # {node: package}: memory-only nodes that hold an NVIDIA GPU's memory
    # (proc/driver/nvidia/gpus/PCI/numa_status), the GPU attached near that package (its local_cpus)
    node_mem_kb=None,  # {node: kB}: nodes whose memory differs from mem_kb (0: a memory-less node)
    devices=(),  # [Dev(...)]: I/O devices (class/net or class/block entries, maybe on a PCI function)
    caches_of=None,  # (package, core, caches, core_cpus) -> the caches that core's CPUs list, for
    # machines whose cores differ; caches: [(level, type, size, cpus)], the standard L1d, L1i, L2 per
    # core and L3; core_cpus(package, core): that core's CPUs
) -> Path:
    """Write the tree under ``root`` and return ``root``."""
    root = Path(root)
    total_cores = packages * cores
    ncpus = total_cores * threads
    cpu_dir = root / "sys/devices/system/cpu"
    online = [c for c in range(ncpus) if c not in set(offline)]

    def cpu_of(p, c, t):
        return t * total_cores + p * cores + c

    def core_cpus(p, c):
        return [cpu_of(p, c, t) for t in range(threads)]

    def pkg_cpus(p):
        return [cpu_of(p, c, t) for c in range(cores) for t in range(threads)]

    per_numa = cores // numa_per_package

    def numa_of(p, c):
        return p * numa_per_package + c // per_numa

    def numa_cpus(n):
        p, k = divmod(n, numa_per_package)
        return [cpu_of(p, c, t) for c in range(k * per_numa, (k + 1) * per_numa) for t in range(threads)]

    _w(cpu_dir / "online", cpulist(online))
    _w(cpu_dir / "possible", f"0-{ncpus - 1}")
    _w(cpu_dir / "isolated", cpulist(isolated))
    for p in range(packages):
        for c in range(cores):
            for t in range(threads):
                cpu = cpu_of(p, c, t)
                d = cpu_dir / f"cpu{cpu}"
                _w(d / "online", "0" if cpu in offline else "1")
                if cpu in offline or cpu in no_topology:
                    continue  # the kernel hides topology/ and cache/ of offline CPUs
                topo = d / "topology"
                core_f, pkg_f = ("thread_siblings", "core_siblings") if old_names else ("core_cpus", "package_cpus")
                _w(topo / core_f, mask(set(core_cpus(p, c)) - set(offline), ncpus))
                _w(topo / pkg_f, mask(set(pkg_cpus(p)) - set(offline), ncpus))
                _w(topo / "core_id", str(c))
                _w(topo / "physical_package_id", str(p))
                if books:
                    b = p // books
                    _w(topo / "book_id", str(b))
                    _w(topo / "book_siblings", mask({x for q in range(packages) if q // books == b
                                                     for x in pkg_cpus(q)} - set(offline), ncpus))
                    if drawers:
                        dr = b // drawers
                        _w(topo / "drawer_id", str(dr))
                        _w(topo / "drawer_siblings", mask({x for q in range(packages) if q // books // drawers == dr
                                                           for x in pkg_cpus(q)} - set(offline), ncpus))
                if caches:
                    l3 = numa_cpus(numa_of(p, c)) if l3_per == "numa" else pkg_cpus(p)
                    listed = [
                        (1, "Data", "32K", core_cpus(p, c)),
                        (1, "Instruction", "32K", core_cpus(p, c)),
                        (2, "Unified", "1024K", core_cpus(p, c)),
                        (3, "Unified", "16384K", l3),
                    ]
                    if caches_of is not None:
                        listed = caches_of(p, c, listed, core_cpus)
                    for idx, (level, ctype, size, cpus) in enumerate(listed):  # index0.. without gaps
                        cd = d / f"cache/index{idx}"
                        _w(cd / "level", str(level))
                        _w(cd / "type", ctype)
                        _w(cd / "size", size)
                        _w(cd / "shared_cpu_map", mask(set(cpus) - set(offline), ncpus))

    nnodes = packages * numa_per_package + cpuless_nodes
    node_dir = root / "sys/devices/system/node"
    _w(node_dir / "online", f"0-{nnodes - 1}")
    for n in range(nnodes):
        cpus = numa_cpus(n) if n < packages * numa_per_package else []
        _w(node_dir / f"node{n}/cpumap", mask(set(cpus) - set(offline), ncpus))
        kb = (node_mem_kb or {}).get(n, mem_kb)
        _w(node_dir / f"node{n}/meminfo", f"Node {n} MemTotal:       {kb} kB\nNode {n} MemFree:        {kb // 2} kB\n")
        if distances is not None:
            _w(node_dir / f"node{n}/distance", " ".join(str(d) for d in distances[n]))
    for n, inits in (initiators or {}).items():
        d = node_dir / f"node{n}/access0/initiators"
        d.mkdir(parents=True, exist_ok=True)
        for i in inits:
            (d / f"node{i}").mkdir(exist_ok=True)  # a symlink to the node on a real system

    proc = root / "proc"
    for k, (n, p) in enumerate(sorted((nvidia_gpu_nodes or {}).items())):
        pci = f"0000:{k + 1:02x}:00.0"
        _w(proc / f"driver/nvidia/gpus/{pci}/numa_status",
           f"Node: {n}\nStatus: online\nMemory block size: 0x8000000\nMemory:\n")
        _w(root / f"sys/bus/pci/devices/{pci}/local_cpus", mask(set(pkg_cpus(p)) - set(offline), ncpus))
    for dev in devices:
        _device(root, dev, lambda ids: mask(set(ids) - set(offline), ncpus))
    if books:
        _w(proc / "hwloc-nofile-info", "OSName: Linux\nArchitecture: s390x\n")
    _w(proc / "meminfo", f"MemTotal:       {mem_kb * nnodes} kB\n")
    _w(proc / "cpuinfo", "".join(f"processor\t: {c}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\n" for c in online))
    mounts = ["sysfs /sys sysfs rw 0 0", "proc /proc proc rw 0 0"]
    cg_cpus = cpulist(cgroup_cpus) if cgroup_cpus is not None else cpulist(online)
    cg_mems = cpulist(cgroup_mems) if cgroup_mems is not None else f"0-{nnodes - 1}"
    name = "/tesson.slice/job"
    if cgroup == "v2":
        mounts.append("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0")
        base = root / "sys/fs/cgroup"
        _w(base / "cgroup.controllers", "cpuset cpu io memory pids")
        _w(base / "cpuset.cpus.effective", cpulist(online))
        _w(base / "cpuset.mems.effective", f"0-{nnodes - 1}")
        _w(base / name.lstrip("/") / "cpuset.cpus", cg_cpus)
        _w(base / name.lstrip("/") / "cpuset.cpus.effective", cg_cpus)
        _w(base / name.lstrip("/") / "cpuset.mems.effective", cg_mems)
        _w(proc / "self/cgroup", f"0::{name}")
    elif cgroup in ("v1", "v1-mounts"):
        mnt = "/sys/fs/cgroup/cpuset" if cgroup == "v1" else "/cgroupfs/cpuset"
        mounts.append("tmpfs /sys/fs/cgroup tmpfs ro 0 0")
        mounts.append(f"cgroup {mnt} cgroup rw,nosuid,nodev,noexec,relatime,cpuset 0 0")
        base = root / mnt.lstrip("/")
        _w(base / "cpuset.cpus", f"0-{ncpus - 1}")
        _w(base / "cpuset.mems", f"0-{nnodes - 1}")
        _w(base / name.lstrip("/") / "cpuset.cpus", cg_cpus)
        _w(base / name.lstrip("/") / "cpuset.mems", cg_mems)
        _w(proc / "self/cgroup", f"4:memory:{name}\n3:cpuset:{name}\n2:cpu,cpuacct:{name}\n1:name=systemd:/\n")
    elif cgroup in ("cpuset", "v1-noprefix"):
        if cgroup == "cpuset":
            mnt = "/dev/cpuset"
            mounts.append("none /dev/cpuset cpuset rw 0 0")
        else:  # a cgroup v1 cpuset hierarchy mounted to look like the old cpuset filesystem
            mnt = "/my\\040cpusets"  # a space in the path, escaped as /proc/mounts does
            mounts.append(f"cgroup {mnt} cgroup rw,relatime,cpuset,noprefix 0 0")
            mnt = "/my cpusets"
        base = root / mnt.lstrip("/")
        _w(base / "cpus", f"0-{ncpus - 1}")
        _w(base / "mems", f"0-{nnodes - 1}")
        _w(base / name.lstrip("/") / "cpus", cg_cpus)
        _w(base / name.lstrip("/") / "mems", cg_mems)
        _w(proc / "self/cpuset", name)
    _w(proc / "mounts", "\n".join(mounts))
    return root


def uneven_caches(l2_shared=None, l1_on=None, l2_on=None, l3_on=None):
    """A ``caches_of`` for cores that list different caches, as some real machines' sysfs shows:
    ``l2_shared``: the cores (of each package) that share one L2, the others listing no L2 at all;
    ``l1_on``: the only cores that list L1 caches; ``l2_on``: the only cores that list their own
    L2; ``l3_on``: the only cores that list the L3, which only they share. The kernel numbers each
    CPU's caches index0.. without gaps, so the same index names different caches on different
    cores (with ``l2_on`` and ``l3_on`` apart, cores list as many caches, index2 an L2 on some and
    an L3 on the others)."""

    def caches_of(p, c, caches, core_cpus):
        out = []
        for level, ctype, size, cpus in caches:
            if level == 1 and l1_on is not None and c not in l1_on:
                continue
            if level == 2 and l2_on is not None and c not in l2_on:
                continue
            if level == 2 and l2_shared is not None:
                if c not in l2_shared:
                    continue
                size, cpus = "2048K", [x for k in l2_shared for x in core_cpus(p, k)]
            if level == 3 and l3_on is not None:
                if c not in l3_on:
                    continue
                cpus = [x for k in l3_on for x in core_cpus(p, k)]
            out.append((level, ctype, size, cpus))
        return out

    return caches_of
