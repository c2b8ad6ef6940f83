"""The two views of a topology side by side: the JSON document (``tesson topology --format json``,
the facts placement uses) and the text tree (lstopo's console view)."""

from __future__ import annotations

from tesson import cpulist


def to_json(topo) -> dict:
    """The JSON document of ``tesson topology --format json`` (a dict, ready for json.dump)."""
    return {
        "pus": topo.pus,
        "cores": [{"pus": c.cpus} for c in topo.cores],
        "numa_nodes": [
            {"id": n.id, "cpus": n.cpus, "memory_bytes": n.memory_bytes} for n in topo.numa_nodes
        ],
        "packages": [{"id": p.os_index, "cpus": p.cpus} for p in topo.packages],
        "l3": [{"cpus": c.cpus} for c in topo.l3],
        "devices": [device_json(topo, d) for d in topo.devices],
    }


def device_json(topo, dev) -> dict:
    """One OS device: name, kind, the PCI function it sits on, its local CPUs and NUMA nodes."""
    return {
        "name": dev.name,
        "kind": dev.kind,
        "pci": dev.pci.busid if dev.pci is not None else None,
        "cpus": cpulist.bits(dev.cpuset),
        "numa_nodes": topo.mems_for(dev.cpuset),
    }


def pci_class(class_id: int) -> str:
    """hwloc's name for a PCI class (hwloc_pci_class_string)."""
    name = PCI_CLASSES.get(class_id)
    if name is None:
        name = PCI_CLASSES.get(class_id >> 8 << 16, "Other")
    return name


# hwloc_pci_class_string: exact class ids, then (base class << 16) for a whole base class
PCI_CLASSES = {
    0x0001: "VGA",
    0x0100: "SCSI", 0x0101: "IDE", 0x0102: "Floppy", 0x0103: "IPI", 0x0104: "RAID", 0x0105: "ATA",
    0x0106: "SATA", 0x0107: "SAS", 0x0108: "NVMExp", 0x01 << 16: "Storage",
    0x0200: "Ethernet", 0x0201: "TokenRing", 0x0202: "FDDI", 0x0203: "ATM", 0x0204: "ISDN",
    0x0205: "WorldFip", 0x0206: "PICMG", 0x0207: "InfiniBand", 0x0208: "Fabric", 0x02 << 16: "Network",
    0x0300: "VGA", 0x0301: "XGA", 0x0302: "3D", 0x03 << 16: "Display",
    0x0400: "MultimediaVideo", 0x0401: "MultimediaAudio", 0x0402: "Telephony", 0x0403: "AudioDevice",
    0x04 << 16: "Multimedia",
    0x0500: "RAM", 0x0501: "Flash", 0x0502: "CXLMem", 0x05 << 16: "Memory",
    0x0600: "HostBridge", 0x0601: "ISABridge", 0x0602: "EISABridge", 0x0603: "MicroChannelBridge",
    0x0604: "PCIBridge", 0x0605: "PCMCIABridge", 0x0606: "NubusBridge", 0x0607: "CardBusBridge",
    0x0608: "RACEwayBridge", 0x0609: "SemiTransparentPCIBridge", 0x060A: "InfiniBandPCIHostBridge",
    0x06 << 16: "Bridge",
    0x0700: "Serial", 0x0701: "Parallel", 0x0702: "MultiportSerial", 0x0703: "Model", 0x0704: "GPIB",
    0x0705: "SmartCard", 0x07 << 16: "Communication",
    0x0800: "PIC", 0x0801: "DMA", 0x0802: "Timer", 0x0803: "RTC", 0x0804: "PCIHotPlug", 0x0805: "SDHost",
    0x0806: "IOMMU", 0x08 << 16: "SystemPeripheral",
    0x0900: "Keyboard", 0x0901: "DigitizerPen", 0x0902: "Mouse", 0x0903: "Scanern", 0x0904: "Gameport",
    0x09 << 16: "Input",
    0x0A << 16: "DockingStation",
    0x0B00: "386", 0x0B01: "486", 0x0B02: "Pentium", 0x0B10: "Alpha", 0x0B20: "PowerPC", 0x0B30: "MIPS",
    0x0B40: "Co-Processor", 0x0B << 16: "Processor",
    0x0C00: "FireWire", 0x0C01: "ACCESS", 0x0C02: "SSA", 0x0C03: "USB", 0x0C04: "FibreChannel",
    0x0C05: "SMBus", 0x0C06: "InfiniBand", 0x0C07: "IPMI-SMIC", 0x0C08: "SERCOS", 0x0C09: "CANBUS",
    0x0C << 16: "SerialBus",
    0x0D00: "IRDA", 0x0D01: "ConsumerIR", 0x0D10: "RF", 0x0D11: "Bluetooth", 0x0D12: "Broadband",
    0x0D20: "802.1a", 0x0D21: "802.1b", 0x0D << 16: "Wireless",
    0x0E00: "I2O", 0x0E << 16: "Intelligent",
    0x0F << 16: "Satellite", 0x10 << 16: "Encryption", 0x11 << 16: "SignalProcessing",
    0x12 << 16: "ProcessingAccelerator", 0x13 << 16: "Instrumentation", 0x40 << 16: "Co-Processor",
}


def _osdev_line(dev) -> str:
    sub = f"({dev.subtype})" if dev.subtype else ""
    return f'{dev.label}{sub} "{dev.name}"'


def _io_lines(topo, item, indent: int, lines: list) -> None:
    """lstopo's lines for a host bridge (with everything below it) or a PCI-less OS device."""
    pad = "  " * indent
    if item.__class__.__name__ == "Device":
        lines.append(pad + _osdev_line(item))
        return
    if item.host:
        lines.append(pad + "HostBridge")
    elif item.bridge:
        lines.append(pad + "PCIBridge")
    else:
        busid = item.busid if topo.io.pci_domains else item.busid[5:]
        lines.append(f"{pad}PCI {busid} ({pci_class(item.class_id)})")
    for c in item.children:
        _io_lines(topo, c, indent + 1, lines)
    for d in item.osdevs:
        lines.append("  " * (indent + 1) + _osdev_line(d))


def _size(nbytes: int) -> str:
    """lstopo's way: KB, MB or GB, whichever keeps the number below 10 of the next unit."""
    value, unit = nbytes / 1024, "KB"
    for nxt in ("MB", "GB", "TB"):
        if value < 10 * 1024:
            break
        value, unit = value / 1024, nxt
    return f"{round(value)}{unit}"


GROUP_SUBTYPES = {"cluster": "Cluster", "book": "Book", "drawer": "Drawer", "numa": "", "distance": ""}


def _label(obj, group_index: dict) -> str:
    k = obj.kind
    if k == "machine":
        return "Machine"
    if k == "package":
        return f"Package P#{obj.os_index}"
    if k == "die":
        return f"Die P#{obj.os_index}"
    if k in GROUP_SUBTYPES:  # hwloc Groups: GroupN(Subtype), N counting group levels from the top
        sub = GROUP_SUBTYPES[k]
        name = f"Group{group_index.get(obj.depth, 0)}" + (f"({sub})" if sub else "")
        return f"{name} P#{obj.os_index}" if obj.os_index >= 0 else name
    if k.startswith("l") and k[1:].isdigit():
        size = obj.attrs.get("size") or 0
        suffix = "d" if k == "l1" and obj.attrs.get("type") == "Data" else ""
        idx = f" P#{obj.os_index}" if obj.os_index >= 0 else ""
        return f"L{k[1:]}{suffix}{idx} ({_size(size)})" if size else f"L{k[1:]}{suffix}{idx}"
    if k == "core":
        return f"Core P#{obj.os_index}" if obj.os_index >= 0 else "Core"
    if k == "pu":
        return f"PU P#{obj.os_index}"
    return k


def _numa_line(node) -> str:
    return f"NUMANode P#{node.id} ({_size(node.memory_bytes)})"


def render_text(topo, io: bool = True, marks: dict | None = None) -> str:
    """lstopo's console view (``lstopo-no-graphics -p --whole-io``), less instruction caches, plus
    each object's allowed CPUs; ``io=False``: without I/O (``--no-io``). ``marks``: CPU id -> text
    put at the end of that PU's line (``topology --groups``: who holds it)."""
    below = topo.io.below if io else {}
    lines: list[str] = []
    total = sum(n.memory_bytes for n in topo.numa_nodes)
    head = f"Machine ({_size(total)} total, {len(topo.pus)} PUs allowed: {cpulist.format(topo.pus)})"

    group_levels = [d for d, level in enumerate(topo.levels) if level[0].kind in GROUP_SUBTYPES]
    group_index = {d: i for i, d in enumerate(group_levels)}

    def emit(obj, indent: int, label: str | None = None) -> None:
        parts = [label or _label(obj, group_index)]
        # as lstopo does: an object without memory and with a single child shares its line
        while len(obj.children) == 1 and not obj.memory and id(obj) not in below:
            obj = obj.children[0]
            parts.append(_label(obj, group_index))
        text = " + ".join(parts)
        if obj.kind != "pu" and obj.children:
            text += f"  [cpus {cpulist.format(obj.cpus)}]"
        elif marks and obj.kind == "pu" and obj.os_index in marks:
            text += f"  {marks[obj.os_index]}"
        lines.append("  " * indent + text)
        for n in obj.memory:
            lines.append("  " * (indent + 1) + _numa_line(n))
        for c in obj.children:
            emit(c, indent + 1)
        for item in below.get(id(obj), ()):
            _io_lines(topo, item, indent + 1, lines)

    emit(topo.root, 0, head)
    return "\n".join(lines) + "\n"
