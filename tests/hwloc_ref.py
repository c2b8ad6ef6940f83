"""Ask the real hwloc (Debian's lstopo-no-graphics / hwloc-distrib) about a sysfs folder.

Both run with ``HWLOC_FSROOT=DIR HWLOC_THISSYSTEM=1`` and the x86 CPUID backend switched off
(``HWLOC_COMPONENTS=-x86``): otherwise hwloc mixes the CPUID of the machine running the test into the
dump's topology (an L3 that the dump does not have, "intersection without inclusion" warnings).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

HWLOC_ENV = {"HWLOC_THISSYSTEM": "1", "HWLOC_COMPONENTS": "-x86"}
HWLOC_TYPES = {"pu": "pu", "core": "core", "l3": "l3cache", "package": "package"}


# The hwloc release tesson follows (Debian 12's): defaults that tesson copies move between releases
# (NVIDIA GPU memory nodes, s390 books and drawers), so the comparisons hold for this one.
FOLLOWED = "2.9"


def version() -> str:
    """The installed hwloc's version ("2.9.0")."""
    r = subprocess.run(["lstopo-no-graphics", "--version"], capture_output=True, text=True, timeout=60, check=True)
    return r.stdout.split()[-1]


def available() -> bool:
    return shutil.which("lstopo-no-graphics") is not None and shutil.which("hwloc-distrib") is not None


def _env(fsroot: str, thissystem: bool = True) -> dict:
    """hwloc's environment for a folder. ``thissystem=False`` lets hwloc take the architecture from
    the folder's proc/hwloc-nofile-info (with HWLOC_THISSYSTEM=1 it assumes this machine's, and
    e.g. never reads s390 books on an x86 host)."""
    env = dict(os.environ)
    env.update(HWLOC_ENV, HWLOC_FSROOT=str(fsroot))
    if not thissystem:
        del env["HWLOC_THISSYSTEM"]
    return env


def parse_bitmap(text: str) -> list[int]:
    """hwloc's bitmap string ("0xffffffff,,0x0000000f": 32-bit words, high first, empty = 0)."""
    value = 0
    for word in text.split(","):
        value = (value << 32) | (int(word, 16) if word else 0)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def format_bitmap(ids) -> str:
    value = 0
    for i in ids:
        value |= 1 << i
    words = max(1, (value.bit_length() + 31) // 32)
    return ",".join(f"0x{(value >> (32 * w)) & 0xFFFFFFFF:08x}" for w in reversed(range(words)))


def distrib(fsroot: str, unit: str, n: int, restrict=None, thissystem: bool = True) -> list[list[int]] | None:
    """hwloc-distrib --to TYPE N: the cpusets, or None when hwloc refuses (no such objects).

    ``restrict``: CPU ids to restrict the topology to first (hwloc-distrib --restrict).
    """
    extra = ["--restrict", format_bitmap(restrict)] if restrict is not None else []
    r = subprocess.run(
        ["hwloc-distrib", *extra, "--to", HWLOC_TYPES[unit], str(n)],
        env=_env(fsroot, thissystem),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        return None
    return [parse_bitmap(line) for line in r.stdout.split()]


class XObj:
    def __init__(self, el: ET.Element, parent: "XObj | None"):
        self.type = el.get("type")
        self.os_index = int(el.get("os_index")) if el.get("os_index") is not None else None
        self.cpus = parse_bitmap(el.get("cpuset", "0x0"))
        self.attrs = dict(el.attrib)
        self.parent = parent
        self.children: list[XObj] = []  # normal children (no NUMA nodes, I/O or Misc)
        self.memory: list[XObj] = []

    def walk(self):
        yield self
        for c in self.memory:
            yield from c.walk()
        for c in self.children:
            yield from c.walk()


MEMORY_TYPES = ("NUMANode", "MemCache")
SKIP_TYPES = ("Bridge", "PCIDev", "OSDev", "Misc")


def _build(el: ET.Element, parent):
    obj = XObj(el, parent)
    for child in el.findall("object"):
        t = child.get("type")
        if t in SKIP_TYPES:
            continue
        c = _build(child, obj)
        (obj.memory if t in MEMORY_TYPES else obj.children).append(c)
    return obj


def lstopo(fsroot: str, thissystem: bool = True) -> XObj:
    """The root (Machine) of hwloc's tree for this folder, from lstopo's XML."""
    r = subprocess.run(
        ["lstopo-no-graphics", "--no-io", "--of", "xml", "-"],
        env=_env(fsroot, thissystem),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    root = ET.fromstring(r.stdout)
    return _build(root.find("object"), None)


def summary(root: XObj) -> dict:
    """The facts tesson's topology JSON holds, as hwloc sees them (objects with allowed CPUs)."""
    objs = list(root.walk())
    return {
        "pus": sorted(o.os_index for o in objs if o.type == "PU"),
        "cores": [{"pus": o.cpus} for o in objs if o.type == "Core" and o.cpus],
        "numa_nodes": sorted(
            ({"id": o.os_index, "cpus": o.cpus, "memory_bytes": int(o.attrs.get("local_memory", 0))}
             for o in objs if o.type == "NUMANode"),
            key=lambda n: n["id"],
        ),
        "packages": [{"id": o.os_index, "cpus": o.cpus} for o in objs if o.type == "Package" and o.cpus],
        "l3": [{"cpus": o.cpus} for o in objs if o.type == "L3Cache" and o.cpus],
    }


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def distrib_numa(root: XObj, n: int) -> list[list[int]]:
    """The hwloc_distrib walk over hwloc's own tree, stopping at objects within one NUMA node
    (or holding no NUMA node's CPUs at all).

    An independent reference for tesson's ``numa`` unit, which hwloc-distrib cannot stop at.
    """
    nodes = [set(o.cpus) for o in root.walk() if o.type == "NUMANode" and o.cpus]
    # memory-only nodes carry the CPUs of their closest nodes: only the smallest sets are units
    nodes = [s for s in nodes if not any(t < s for t in nodes)]
    out: list[set] = []

    covered = set().union(*nodes)

    def stop(o) -> bool:
        s = set(o.cpus)
        return not s & covered or any(s <= node for node in nodes)

    def rec(roots, n):
        tot = sum(len(r.cpus) for r in roots)
        given = 0
        for r in roots:
            w = len(r.cpus)
            if not w:
                continue
            chunk = _ceil_div((given + w) * n, tot) - _ceil_div(given * n, tot)
            if not r.children or chunk <= 1 or stop(r):
                if chunk:
                    out.extend(set(r.cpus) for _ in range(chunk))
                else:
                    out[-1] |= set(r.cpus)
            else:
                rec(r.children, chunk)
            given += w

    rec([root], n)
    return [sorted(s) for s in out]


def lstopo_console(fsroot: str, thissystem: bool = True, io: bool = False) -> list[str]:
    """``lstopo-no-graphics -p --no-io``'s tree (``io``: ``--whole-io``), without the instruction
    caches (which hwloc itself ignores by default, and tesson too)."""
    r = subprocess.run(
        ["lstopo-no-graphics", "-p", "--whole-io" if io else "--no-io"],
        env=_env(fsroot, thissystem),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = []
    for line in r.stdout.splitlines():
        line = re.sub(r" \+ L\di( P#\d+)? \([^)]*\)", "", line)
        line = re.sub(r"L\di( P#\d+)? \([^)]*\) \+ ", "", line)
        out.append(line.rstrip())
    return out


OSDEV_KINDS = {"0": "block", "1": "gpu", "2": "net", "3": "openfabrics", "4": "dma", "5": "coproc"}
IO_TYPES = ("Bridge", "PCIDev", "OSDev")


def devices(fsroot: str) -> list[dict]:
    """hwloc's OS devices (``lstopo --whole-io``), in its order, as tesson's JSON lists them: name,
    kind, the PCI function above (its bus id), the CPUs and NUMA nodes of the first non-I/O object
    above (what ``hwloc-calc os=NAME`` and ``hwloc-calc --nodeset os=NAME`` print)."""
    r = subprocess.run(
        ["lstopo-no-graphics", "--whole-io", "--of", "xml", "-"],
        env=_env(fsroot), capture_output=True, text=True, timeout=60, check=True,
    )
    out = []

    def walk(el, cpu_side, pci):
        for child in el.findall("object"):
            t = child.get("type")
            if t == "OSDev":
                out.append({
                    "name": child.get("name"),
                    "kind": OSDEV_KINDS[child.get("osdev_type")],
                    "pci": pci,
                    "cpus": parse_bitmap(cpu_side.get("cpuset", "0x0")),
                    "numa_nodes": parse_bitmap(cpu_side.get("nodeset", "0x0")),
                })
                walk(child, cpu_side, pci)
            elif t in IO_TYPES:
                walk(child, cpu_side, child.get("pci_busid") if t == "PCIDev" else pci)
            else:
                walk(child, child, None)

    walk(ET.fromstring(r.stdout), ET.fromstring(r.stdout).find("object"), None)
    return out


def calc(fsroot: str, *locations: str, nodeset: bool = False) -> list[int]:
    """``hwloc-calc [--nodeset] LOCATION...``: the CPU (or NUMA node) ids of those objects."""
    r = subprocess.run(
        ["hwloc-calc", *(["--nodeset"] if nodeset else []), *locations],
        env=_env(fsroot), capture_output=True, text=True, timeout=60, check=True,
    )
    return parse_bitmap(r.stdout.strip())
