"""The PCI bus, read from sys/bus/pci/devices as hwloc 2.x's Linux backend reads it
(hwloc_linuxfs_pci_look_pcidevices, then its pcidisc tree helpers), and where each host bridge sits.

- Every ``DOMAIN:BUS:DEV.FN`` entry is a PCI function. It is a PCI-to-PCI bridge when its class is
  0x0604 and its config space's header type (byte 0x0e, less the multi-function bit) is 1; the buses
  behind it are bytes 0x19 (secondary) and 0x1a (subordinate) of the config space. A bridge whose
  buses make no sense (secondary or subordinate not above its own bus, or secondary > subordinate)
  is dropped, as hwloc drops it. A missing config file reads as all 0xff, a missing class as 0.
- The functions are nested by bus id (hwloc_pci_add_object): a function on a bus a bridge covers
  goes below that bridge; a second function with the same bus id is ignored.
- Consecutive top-level functions on the same domain and bus share one host bridge.
- A host bridge's locality is the ``local_cpus`` of its first function; an unreadable or empty mask
  means the whole machine. The CPU-side object it hangs under is the highest one whose complete CPU
  set equals that mask (restricted to the machine's CPUs), else the deepest one that holds it
  (hwloc's hwloc_find_insert_io_parent_by_complete_cpuset; hwloc then inserts an I/O Group with
  exactly those CPUs when it can, see :func:`locality`).

Difference with Debian's hwloc 2.9: that build refuses PCI domains above 0xffff ("Ignoring PCI
device with non-16bit domain"; hwloc's --enable-32bits-pci-domain, the default from hwloc 3.0,
reads them). tesson reads them as the kernel lists them (VMD and Hyper-V machines have such
domains), as hwloc's own reference for the 2pa-pcidomain32bits dump does.
"""

from __future__ import annotations

from tesson.topology.model import Obj, PciObj
from tesson.topology.sysfs import FS

BASE = "/sys/bus/pci/devices"
_HEX = frozenset("0123456789abcdef")


def parse_busid(text: str) -> tuple[int, int, int, int] | None:
    """``0000:02:00.0`` (or ``02:00.0``, domain 0) as (domain, bus, dev, func); None if it is not one.
    (Split by hand: compiling a regular expression would cost every ``topology`` about 0.4 ms.)"""
    t = text.strip().lower()
    if t.count(":") == 1:
        t = "0000:" + t
    head, dot, func = t.rpartition(".")
    parts = head.split(":")
    if not dot or len(parts) != 3:
        return None
    fields = (*parts, func)
    if not all(f and _HEX.issuperset(f) for f in fields):
        return None
    domain, bus, dev, fn = (int(x, 16) for x in fields)
    return domain, bus, dev, fn


def _cmp(a: PciObj, b: PciObj) -> str:
    """hwloc_pci_compare_busids: where ``a`` goes relative to ``b``."""
    if a.domain != b.domain:
        return "lower" if a.domain < b.domain else "higher"
    if a.bridge and a.secondary <= b.bus <= a.subordinate:
        return "superset"
    if b.bridge and b.secondary <= a.bus <= b.subordinate:
        return "included"
    ka, kb = (a.bus, a.dev, a.func), (b.bus, b.dev, b.func)
    if ka == kb:
        return "equal"
    return "lower" if ka < kb else "higher"


def _insert(siblings: list[PciObj], parent: PciObj | None, new: PciObj) -> None:
    i = 0
    while i < len(siblings):
        cur = siblings[i]
        c = _cmp(new, cur)
        if c == "higher":
            i += 1
            continue
        if c == "included":
            _insert(cur.children, cur, new)
            return
        if c == "equal":
            return  # hwloc ignores the second object with one bus id
        # lower or superset: new goes before cur, and a bridge adopts the following siblings it covers
        new.parent = parent
        rest = siblings[i:]
        del siblings[i:]
        siblings.append(new)
        if new.bridge:
            for j, s in enumerate(rest):
                if _cmp(new, s) == "lower":
                    if s.domain > new.domain or s.bus > new.subordinate:
                        siblings.extend(rest[j:])
                        return
                    siblings.append(s)
                else:
                    s.parent = new
                    new.children.append(s)
        else:
            siblings.extend(rest)
        return
    new.parent = parent
    siblings.append(new)


def _read_one(fs: FS, name: str) -> PciObj | None:
    ids = parse_busid(name)
    if ids is None or name.count(":") != 2:
        return None
    domain, bus, dev, func = ids
    class_id = 0
    text = fs.read_head(f"{BASE}/{name}/class", 16)
    if text:
        try:
            class_id = int(text.split(b"\0", 1)[0].strip() or b"0", 16) >> 8
        except ValueError:
            class_id = 0
    if class_id != 0x0604:
        return PciObj(domain, bus, dev, func, class_id)
    config = fs.read_head(f"{BASE}/{name}/config", 256) or b""  # a bridge: its header type and buses
    config = config + b"\xff" * (256 - len(config))
    if config[0x0E] & 0x7F == 1:
        sec, sub = config[0x19], config[0x1A]
        if sec <= bus or sub <= bus or sec > sub:
            return None  # invalid bridge buses: hwloc drops the bridge
        return PciObj(domain, bus, dev, func, class_id, True, sec, sub)
    return PciObj(domain, bus, dev, func, class_id)


def read_tree(fs: FS) -> list[PciObj]:
    """The host bridges (PciObj with ``host``), each with its PCI tree, in bus id order."""
    top: list[PciObj] = []
    for name in fs.listdir(BASE):
        obj = _read_one(fs, name)
        if obj is not None:
            _insert(top, None, obj)
    hosts: list[PciObj] = []
    i = 0
    while i < len(top):
        first = top[i]
        hb = PciObj(first.domain, 0, 0, 0, host=True, secondary=first.bus, subordinate=first.bus)
        while i < len(top) and top[i].domain == first.domain and top[i].bus == first.bus:
            child = top[i]
            child.parent = hb
            hb.children.append(child)
            if child.bridge and child.subordinate > hb.subordinate:
                hb.subordinate = child.subordinate
            i += 1
        hosts.append(hb)
    return hosts


def find(hosts: list[PciObj], domain: int, bus: int, dev: int, func: int) -> PciObj | None:
    """The PCI object with this bus id, else the smallest bridge whose buses hold it, else None
    (hwloc_pci_find_by_busid)."""
    for hb in hosts:
        if hb.domain == domain and hb.secondary <= bus <= hb.subordinate:
            found = _find_below(hb, domain, bus, dev, func)
            if found is not None:
                return found
    return None


def _find_below(parent: PciObj, domain: int, bus: int, dev: int, func: int) -> PciObj:
    for c in parent.children:
        if (c.domain, c.bus, c.dev, c.func) == (domain, bus, dev, func):
            return c
        if c.domain > domain or (c.domain == domain and c.bus > bus):
            return parent
        if c.bridge and c.domain == domain and c.secondary <= bus <= c.subordinate:
            return _find_below(c, domain, bus, dev, func)
    return parent


def local_cpus(fs: FS, domain: int, bus: int, dev: int, func: int) -> int:
    """The kernel's ``local_cpus`` of a PCI function (0: unreadable or empty)."""
    m = fs.read_mask(f"{BASE}/{domain:04x}:{bus:02x}:{dev:02x}.{func:x}/local_cpus")
    return m or 0


def locality(root: Obj, cpus: int) -> tuple[Obj, int]:
    """Where hwloc hangs I/O whose kernel locality is ``cpus`` (0 = none): (the CPU-side object,
    the allowed CPUs ``hwloc-calc`` gives for it).

    hwloc_find_insert_io_parent_by_complete_cpuset: ``cpus`` is cut to the machine's CPUs; if nothing
    is left the Machine holds it. Otherwise the highest object with exactly those (complete) CPUs,
    else hwloc inserts an I/O Group with exactly those CPUs below the deepest object that holds
    them, unless such a Group would cut across an existing object, in which case that deepest
    object holds the device. The CPUs are then the allowed ones of the Group or object.
    """
    cs = cpus & root.complete
    if not cs:
        return root, root.cpuset
    cur = root
    if cur.complete != cs:
        while True:
            nxt = None
            for c in cur.children:
                if c.complete == cs:
                    return c, c.cpuset
                if c.complete and c.complete & cs == cs:
                    nxt = c
                    break
            if nxt is None:
                break
            cur = nxt
    else:
        return cur, cur.cpuset
    # an I/O Group of exactly cs below cur (no child of cur holds cs): possible unless a child is
    # cut in two by it
    for c in cur.children:
        inter = c.complete & cs
        if inter and inter != c.complete:
            return cur, cur.cpuset
    return cur, cs & root.cpuset
