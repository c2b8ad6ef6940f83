"""The object tree: hwloc-like objects, NUMA nodes, and the Topology that holds them with its levels.

CPU sets are int bitmasks (tesson.cpulist). Nothing here reads files: the Linux backend (the other
modules of this package) makes the objects; ids and sizes that only label the text view may be
:class:`Lazy`, read from sysfs the first time someone asks.
"""

from __future__ import annotations

from collections.abc import Callable

from tesson import cpulist
from tesson.cpulist import bits, mask_of, weight

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    from typing import Any

    from tesson.topology.io import IO

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


class Lazy:
    """A number read only when someone asks for it: ``read(path)`` (None: -1) times ``scale``."""

    __slots__ = ("read", "path", "scale")

    def __init__(self, read: Callable[[str], int | None], path: str, scale: int = 1):
        self.read, self.path, self.scale = read, path, scale

    def get(self) -> int:
        v = self.read(self.path)
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
        if v.__class__ is Lazy:
            v = self._os_index = v.get()
        return v

    @property
    def attrs(self) -> dict:
        a = self._attrs
        if a is None:
            a = self._attrs = {}
        for k, v in a.items():
            if v.__class__ is Lazy:
                a[k] = v.get()
        return a

    @property
    def cpus(self) -> list[int]:
        return bits(self.cpuset)

    @property
    def weight(self) -> int:
        return weight(self.cpuset)

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
        return f"<{self.kind} P#{self.os_index} cpus={cpulist.format(self.cpus)}>"


class NumaNode:
    """A NUMA node: its OS index, allowed CPUs (maybe none) and memory size.

    ``cpuset`` is its locality as hwloc reports it: a memory-only node gets the CPUs of its HMAT
    initiators or of its closest nodes. ``own`` holds only the CPUs the kernel lists in its cpumap.
    """

    __slots__ = ("id", "cpuset", "own", "memory_bytes", "distances")

    def __init__(self, id: int, cpuset: int, memory_bytes: int):
        self.id = id
        self.cpuset = cpuset
        self.own = cpuset
        self.memory_bytes = memory_bytes
        self.distances: dict[int, int] = {}  # SLIT distance to each node id (empty: unknown)

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
        self.fs: Any = None  # the reader it was read with (tesson.topology.sysfs.FS), for the lazy I/O read
        # The CPUs the kernel isolates (isolcpus) that are otherwise allowed, whether or not the tree
        # keeps them (read(include_isolated=False) leaves them out of it): run --no-isolated's mask.
        self.isolated = 0
        self.numa_nodes = numa_nodes  # sorted by id, memory-only nodes included
        objs = root.walk()
        self.levels = connect_levels(root, objs)
        self.cpuset = root.cpuset
        self.pus = bits(root.cpuset)
        # objects with allowed CPUs (the tree also keeps CPU-less ones that hold memory, as hwloc does)
        self.cores = [o for o in objs if o.kind == "core" and o.cpuset]
        self.packages = [o for o in objs if o.kind == "package" and o.cpuset]
        self.l3 = [o for o in objs if o.kind == "l3" and o.cpuset]
        self.objects = objs
        self._io: IO | None = None

    @property
    def io(self) -> IO:
        """The PCI tree and OS devices (tesson.topology.io.IO), read the first time someone asks:
        plans without ``--near`` never pay for it."""
        if self._io is None:
            from tesson.topology import io
            from tesson.topology.sysfs import FS

            self._io = io.read(self.fs or FS(self.fsroot), self.root, self.numa_nodes, self.objects)
        return self._io

    @property
    def devices(self) -> list["Device"]:
        """hwloc's OS devices (virtual ones aside: see ``io.virtual``)."""
        return self.io.devices

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
        from tesson.topology.render import to_json

        return to_json(self)


def connect_levels(root: Obj, objs: list[Obj]) -> list[list[Obj]]:
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


class PciObj:
    """A PCI function (``bridge`` False) or PCI-to-PCI bridge, or a host bridge (``host`` True: no bus
    id of its own, it holds the buses ``secondary``..``subordinate`` of ``domain``), as hwloc's
    Linux backend makes them from sys/bus/pci/devices. ``children`` are the PCI objects below a
    bridge, ``osdevs`` the OS devices (:class:`Device`) the kernel hangs on this one."""

    __slots__ = ("domain", "bus", "dev", "func", "class_id", "bridge", "host", "secondary", "subordinate",
                 "children", "parent", "osdevs", "attach", "cpuset", "local")

    def __init__(self, domain: int, bus: int, dev: int, func: int, class_id: int = 0, bridge: bool = False,
                 secondary: int = 0, subordinate: int = 0, host: bool = False):
        self.domain, self.bus, self.dev, self.func = domain, bus, dev, func
        self.class_id = class_id
        self.bridge = bridge or host
        self.host = host
        self.secondary, self.subordinate = secondary, subordinate
        self.children: list[PciObj] = []
        self.parent: PciObj | None = None
        self.osdevs: list[Device] = []
        self.attach: Obj | None = None  # host bridges: the CPU-side object hwloc hangs them under
        self.cpuset = 0  # host bridges: the allowed CPUs local to them (see tesson.topology.pci)
        self.local = False  # host bridges: whether the kernel gave their locality

    @property
    def busid(self) -> str:
        """The kernel's name, ``DDDD:BB:DD.F`` (a host bridge: ``DDDD:BB``, its first bus)."""
        if self.host:
            return f"{self.domain:04x}:{self.secondary:02x}"
        return f"{self.domain:04x}:{self.bus:02x}:{self.dev:02x}.{self.func:x}"

    def host_bridge(self) -> "PciObj":
        o = self
        while o.parent is not None:
            o = o.parent
        return o

    def walk(self) -> list["PciObj"]:
        out, stack = [], [self]
        while stack:
            o = stack.pop()
            out.append(o)
            stack.extend(reversed(o.children))
        return out

    def __repr__(self) -> str:  # pragma: no cover
        return f"<PciObj {self.busid}{' bridge' if self.bridge else ''}>"


class Device:
    """An OS device as hwloc reports it: ``name`` (eth0, nvme0n1, card0...), ``kind`` (hwloc's OS
    device type in lower case: net, block, gpu, openfabrics, dma, coproc), ``subtype`` (hwloc's, or
    ""), the PCI function it sits on (``pci``, or None), and its locality: ``cpuset`` (the allowed
    CPUs of the first CPU-side object above it, what ``hwloc-calc os=NAME`` prints) and
    ``attach`` (that object). ``local`` is False when the kernel gives no locality (hwloc hangs such
    a device on the Machine); ``virtual`` devices (lo, bridges, veth...) are not hwloc's at all
    (hwloc skips them unless HWLOC_VIRTUAL_LINUX_OSDEV is set) and are shown nowhere, but ``run
    --near`` accepts them (with the whole machine as their locality)."""

    __slots__ = ("name", "kind", "subtype", "pci", "cpuset", "attach", "local", "virtual", "why")

    def __init__(self, name: str, kind: str, subtype: str = "", pci: PciObj | None = None):
        self.name, self.kind, self.subtype, self.pci = name, kind, subtype, pci
        self.cpuset = 0
        self.attach: Obj | None = None
        self.local = False
        self.virtual = False
        self.why = ""  # for a device without locality: why (for the warning)

    @property
    def label(self) -> str:
        """lstopo's name for it: Net, Block, GPU, OpenFabrics, DMA, CoProc."""
        return OSDEV_LABELS[self.kind]

    def __repr__(self) -> str:  # pragma: no cover
        return f"<Device {self.kind} {self.name} cpus={cpulist.format(bits(self.cpuset))}>"


OSDEV_LABELS = {"block": "Block", "net": "Net", "openfabrics": "OpenFabrics", "gpu": "GPU", "dma": "DMA",
                "coproc": "CoProc"}
