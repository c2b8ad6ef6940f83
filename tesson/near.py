"""``run --near DEVICE``: from device names to the CPUs a group may use (pure; stdlib only).

A DEVICE is an OS device's name as hwloc lists it (eth0, ib0, nvme0n1, sda, card0, qib0...), a
virtual one the kernel lists in class/net or class/block (lo, docker0, veth..., loop0: hwloc skips
those), or a PCI function's address (``0000:02:00.0``, or ``02:00.0`` in domain 0). Its CPUs are what
``hwloc-calc os=NAME`` (``pci=ADDRESS``) prints: the allowed CPUs of the CPU-side object hwloc hangs
it under (tesson.topology.io). Several devices: the union of their CPUs, as ``hwloc-calc os=A os=B``.
The plan is then ``hwloc-distrib --restrict CPUS --to UNIT N`` (tesson.placement.plan's
``restrict``), and each shard's memory comes from the NUMA nodes of its CPUs, so from the device's.

Hazards: a device with no known locality (virtual; no PCI parent and no ``numa_node``; a PCI bus the
kernel gives no ``local_cpus``, or only all CPUs of a machine with several NUMA nodes) has the whole
machine as its locality: the group is placed on the whole machine and one warning line says so.
Reading devices costs file reads: only a run with ``--near`` pays for them.
"""

from __future__ import annotations

from tesson.errors import UsageError


class Near:
    """The resolved ``--near`` devices: ``names`` (as recorded in the labels: the device names, a PCI
    function as ``DDDD:BB:DD.F``), ``cpuset`` (int mask) and ``warnings`` (one line each)."""

    __slots__ = ("names", "cpuset", "warnings", "devices")

    def __init__(self, names: tuple, cpuset: int, warnings: list, devices: list):
        self.names, self.cpuset, self.warnings, self.devices = names, cpuset, warnings, devices


def _pci_target(topo, spec: str):
    from tesson.topology import pci

    ids = pci.parse_busid(spec)
    if ids is None:
        return None
    for o in topo.io.pci_objects():
        if (o.domain, o.bus, o.dev, o.func) == ids:
            return o
    return None


def resolve(topo, specs) -> Near:
    """Resolve ``--near`` values against the topology's devices; UsageError (exit 2) for a device
    that does not exist, naming those that do."""
    io = topo.io
    by_name = {d.name: d for d in io.devices}
    for d in io.virtual:
        by_name.setdefault(d.name, d)
    names: list[str] = []
    cpuset = 0
    warnings: list[str] = []
    found = []
    for spec in specs:
        spec = spec.strip()
        dev = by_name.get(spec)
        if dev is not None:
            local, cpus, name = dev.local, dev.cpuset, dev.name
            why = dev.why
        else:
            obj = _pci_target(topo, spec)
            if obj is None:
                known = ", ".join(sorted(by_name)) or "none"
                raise UsageError(
                    f"--near {spec!r}: no such device on this machine (devices: {known}; "
                    f"or a PCI address such as 0000:02:00.0: see tesson topology)"
                )
            hb = obj.host_bridge()
            local, cpus, name, dev = hb.local, hb.cpuset, obj.busid, obj
            why = f"the kernel gives PCI {hb.children[0].busid} no locality"
        if not local:
            warnings.append(f"warning: {name} has no known locality ({why}): placing on the whole machine")
            cpus = topo.cpuset
        if name not in names:
            names.append(name)
            found.append(dev)
        cpuset |= cpus
    return Near(tuple(names), cpuset, warnings, found)
