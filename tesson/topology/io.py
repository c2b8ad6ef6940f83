"""I/O devices and their locality, read as hwloc 2.x's Linux backend reads them with all I/O kept
(``lstopo --whole-io``: every PCI function and bridge, and every OS device class hwloc knows).

OS devices come class by class, in hwloc's order: ``class/block`` (partitions skipped),
``bus/dax/devices`` (kmem ones skipped: they are NUMA nodes), ``class/net``, ``class/infiniband``
(``scif*`` skipped), ``class/ve``, ``class/bxi``, ``class/drm`` (only entries with a ``dev`` file),
``class/dma``; within a class, in directory order. Each one's parent is found as hwloc's
hwloc_linuxfs_find_osdev_parent finds it, from the target of its sysfs symlink:

- a path under ``/virtual/`` is a virtual device (lo, bridges, veth, tun...): hwloc skips it;
  tesson keeps it aside for ``run --near`` (no locality: the whole machine, with a warning);
- the last PCI bus id in the path names its PCI function: the device hangs below it and takes the
  locality of the function's host bridge (tesson.topology.pci); a bus id with no PCI object takes
  the locality of its own ``local_cpus``;
- otherwise the device's ``numa_node`` (``device/numa_node``; for bus devices their own, or their
  parent's for DAX) names a NUMA node: the device hangs on the object that node hangs on;
- otherwise the Machine holds it.

A device's CPUs are those ``hwloc-calc os=NAME`` prints: the allowed CPUs of the first CPU-side
object above it (or of the I/O Group hwloc would insert for it). Reading all this costs a few
hundred small file reads: the topology reads it only when asked (``Topology.io``).
"""

from __future__ import annotations

from tesson.topology import pci
from tesson.topology.model import Device, NumaNode, Obj, PciObj
from tesson.topology.sysfs import FS


class IO:
    """What the I/O discovery found: ``hosts`` (host bridges, each with ``attach``/``cpuset``),
    ``devices`` (hwloc's OS devices, in hwloc's order), ``virtual`` (virtual devices, hwloc's
    unlisted ones) and, for display, ``below``: id(CPU-side object) -> the host bridges and
    PCI-less devices that hang on it, in order."""

    def __init__(self, hosts: list[PciObj], devices: list[Device], virtual: list[Device], below: dict):
        self.hosts, self.devices, self.virtual, self.below = hosts, devices, virtual, below
        self.pci_domains = any(h.domain for h in hosts)

    def pci_objects(self) -> list[PciObj]:
        return [o for h in self.hosts for o in h.walk() if not o.host]

    def names(self) -> list[str]:
        return [d.name for d in self.devices] + [d.name for d in self.virtual]


def _readlink(fs: FS, p: str) -> str | None:
    return fs.readlink(p)


def _last_busid(link: str) -> tuple[int, int, int, int] | None:
    """The last PCI bus id in a sysfs device path ("../../devices/pci0000:00/0000:00:05.0/0000:02:00.0/net/eth0")."""
    at = link.find("/pci")
    if at < 0:
        return None
    found = None
    for part in link[at + 4:].split("/")[1:]:
        ids = pci.parse_busid(part)
        if ids is None:
            break
        found = ids
    return found


def _read_int(fs: FS, p: str) -> int | None:
    data = fs.read_head(p, 64)
    if data is None:
        return None
    try:
        return int(data.split(b"\0", 1)[0].strip())
    except ValueError:
        return None


class _Discovery:
    def __init__(self, fs: FS, root: Obj, numa_nodes: list[NumaNode], objects: list[Obj]):
        self.fs, self.root = fs, root
        self.below: dict[int, list] = {}
        multi = len([n for n in numa_nodes if n.own]) > 1
        self.whole_is_local = not multi  # one NUMA node: the whole machine is every device's locality
        self.node_obj: dict[int, Obj] = {}
        for o in objects:
            for n in o.memory:
                t = o
                while not t.complete and t.parent is not None:
                    t = t.parent
                self.node_obj[n.id] = t
        self.hosts = pci.read_tree(fs)
        for hb in self.hosts:
            first = hb.children[0]
            cpus = pci.local_cpus(fs, first.domain, first.bus, first.dev, first.func)
            hb.attach, hb.cpuset = pci.locality(root, cpus)
            hb.local = bool(cpus & root.complete) and (hb.attach is not root or self.whole_is_local)
            self.below.setdefault(id(hb.attach), []).append(hb)

    def place(self, dev: Device, path: str, under_bus: bool = False, parent_attrs: bool = False) -> bool:
        """Find the device's parent and locality; False when hwloc would not list it (no link)."""
        fs = self.fs
        link = _readlink(fs, path)
        if link is None:
            link = _readlink(fs, path + "/device")
            if link is None:
                return False
        if "/virtual/" in link:
            dev.virtual = True
            dev.attach, dev.cpuset, dev.why = self.root, self.root.cpuset, "a virtual device"
            return True
        ids = _last_busid(link)
        if ids is not None:
            obj = pci.find(self.hosts, *ids)
            if obj is not None:
                hb = obj.host_bridge()
                dev.pci = obj
                obj.osdevs.append(dev)
                dev.attach, dev.cpuset, dev.local = hb.attach, hb.cpuset, hb.local
                if not dev.local:
                    dev.why = f"the kernel gives PCI {obj.host_bridge().children[0].busid} no locality"
                return True
            cpus = pci.local_cpus(fs, *ids)
            dev.attach, dev.cpuset = pci.locality(self.root, cpus)
            dev.local = bool(cpus & self.root.complete) and (dev.attach is not self.root or self.whole_is_local)
            if not dev.local:
                dev.why = "the kernel gives its PCI bus no locality"
            self._hang(dev)
            return True
        if under_bus:
            node = _read_int(fs, path + "/numa_node")
            if (node is None or node < 0) and parent_attrs:
                node = _read_int(fs, path + "/../numa_node")
        else:
            node = _read_int(fs, path + "/device/numa_node")
        target = self.node_obj.get(node) if node is not None and node >= 0 else None
        if target is not None:
            dev.attach, dev.cpuset = target, target.cpuset
            dev.local = target is not self.root or self.whole_is_local
        else:
            dev.attach, dev.cpuset, dev.local = self.root, self.root.cpuset, self.whole_is_local
        if not dev.local:
            dev.why = "it has no PCI parent and no numa_node"
        self._hang(dev)
        return True

    def _hang(self, dev: Device) -> None:
        self.below.setdefault(id(dev.attach), []).append(dev)


def _block_subtype(fs: FS, path: str, name: str) -> str:
    devtype = fs.read_head(path + "/device/devtype", 128) or b""
    if devtype.startswith(b"nd_"):
        return "NVM"
    blocktype = ""
    dev = fs.read_head(path + "/dev", 64)
    if dev:
        mm = dev.split(b"\0", 1)[0].strip().decode("ascii", "replace")
        data = fs.read(f"/run/udev/data/b{mm}")
        if data:
            for line in data.decode("utf-8", "replace").splitlines():
                if line.startswith("E:ID_TYPE="):
                    blocktype = line[len("E:ID_TYPE="):]
    if blocktype == "disk" or name.startswith("nvme"):
        return "Disk"
    if blocktype == "tape":
        return "Tape"
    if blocktype in ("cd", "floppy", "optical"):
        return "Removable Media Device"
    return ""


def _dax_is_kmem(fs: FS, name: str) -> bool:
    link = _readlink(fs, f"/sys/bus/dax/devices/{name}/driver")
    return link is not None and link.rstrip("/").rsplit("/", 1)[-1] == "kmem"


def read(fs: FS, root: Obj, numa_nodes: list[NumaNode], objects: list[Obj]) -> IO:
    """Discover the PCI tree and the OS devices of the machine under ``fs``, against its CPU tree."""
    d = _Discovery(fs, root, numa_nodes, objects)
    devices: list[Device] = []
    virtual: list[Device] = []

    def add(dev: Device, path: str, **kw) -> None:
        if d.place(dev, path, **kw):
            (virtual if dev.virtual else devices).append(dev)

    for name in fs.listdir("/sys/class/block"):
        path = f"/sys/class/block/{name}"
        if fs.exists(path + "/partition"):
            continue
        add(Device(name, "block", _block_subtype(fs, path, name)), path)
    for name in fs.listdir("/sys/bus/dax/devices"):
        if not _dax_is_kmem(fs, name):
            add(Device(name, "block"), f"/sys/bus/dax/devices/{name}", under_bus=True, parent_attrs=True)
    for name in fs.listdir("/sys/class/net"):
        add(Device(name, "net"), f"/sys/class/net/{name}")
    for name in fs.listdir("/sys/class/infiniband"):
        if not name.startswith("scif"):
            add(Device(name, "openfabrics"), f"/sys/class/infiniband/{name}")
    for name in fs.listdir("/sys/class/ve"):
        add(Device(name, "coproc", "VectorEngine"), f"/sys/class/ve/{name}")
    for name in fs.listdir("/sys/class/bxi"):
        add(Device(name, "net", "BXI"), f"/sys/class/bxi/{name}")
    for name in fs.listdir("/sys/class/drm"):
        if fs.exists(f"/sys/class/drm/{name}/dev"):
            add(Device(name, "gpu"), f"/sys/class/drm/{name}")
    for name in fs.listdir("/sys/class/dma"):
        add(Device(name, "dma"), f"/sys/class/dma/{name}")
    return IO(d.hosts, _tree_order(root, d.below, len(devices)), virtual, d.below)


def _tree_order(root: Obj, below: dict, count: int) -> list[Device]:
    """The devices in lstopo's order: an object's descendants' devices, then those hanging on it
    (host bridges in bus order, a PCI object's children before its own OS devices)."""
    out: list[Device] = []

    def pci_walk(o: PciObj) -> None:
        for c in o.children:
            pci_walk(c)
        out.extend(o.osdevs)

    def walk(obj: Obj) -> None:
        for c in obj.children:
            walk(c)
        for item in below.get(id(obj), ()):
            if isinstance(item, Device):
                out.append(item)
            else:
                pci_walk(item)

    walk(root)
    assert len(out) == count
    return out
