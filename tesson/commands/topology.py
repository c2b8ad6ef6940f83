"""tesson topology: the CPUs, caches and NUMA nodes tesson sees, as a compact tree or as JSON."""

from __future__ import annotations

import json
import sys

from tesson import cpulist


def _size(nbytes: int) -> str:
    """lstopo's way: KB, MB or GB, whichever keeps the number below 10 of the next unit."""
    value, unit = nbytes / 1024, "KB"
    for nxt in ("MB", "GB", "TB"):
        if value < 10 * 1024:
            break
        value, unit = value / 1024, nxt
    return f"{round(value)}{unit}"


def _label(obj) -> str:
    k = obj.kind
    if k == "machine":
        return "Machine"
    if k == "package":
        return f"Package P#{obj.os_index}"
    if k == "die":
        return f"Die P#{obj.os_index}"
    if k == "cluster":
        return f"Cluster P#{obj.os_index}" if obj.os_index >= 0 else "Cluster"
    if k == "numa":
        return "Group (NUMA)"
    if k in ("book", "drawer"):
        return f"{k.capitalize()} P#{obj.os_index}"
    if k.startswith("l") and k[1:].isdigit():
        size = obj.attrs.get("size") or 0
        suffix = "d" if k == "l1" and obj.attrs.get("type") == "Data" else ""
        return f"L{k[1:]}{suffix} ({_size(size)})" if size else f"L{k[1:]}{suffix}"
    if k == "core":
        return f"Core P#{obj.os_index}" if obj.os_index >= 0 else "Core"
    if k == "pu":
        return f"PU P#{obj.os_index}"
    return k


def _numa_line(node) -> str:
    return f"NUMANode P#{node.id} ({_size(node.memory_bytes)})"


def render_text(topo) -> str:
    lines: list[str] = []
    total = sum(n.memory_bytes for n in topo.numa_nodes)
    head = f"Machine ({_size(total)} total, {len(topo.pus)} PUs allowed: {cpulist.format(topo.pus)})"

    def emit(obj, indent: int, label: str | None = None) -> None:
        parts = [label or _label(obj)]
        # lstopo-style: an object with one child and no memory on that child is printed on one line
        while len(obj.children) == 1 and not obj.memory and not obj.children[0].memory:
            obj = obj.children[0]
            parts.append(_label(obj))
        text = " + ".join(parts)
        if obj.kind != "pu" and obj.children:
            text += f"  [cpus {cpulist.format(obj.cpus)}]"
        lines.append("  " * indent + text)
        for n in obj.memory:
            lines.append("  " * (indent + 1) + _numa_line(n))
        for c in obj.children:
            emit(c, indent + 1)

    root = topo.root
    lines.append(head)
    for n in root.memory:
        lines.append("  " + _numa_line(n))
    for c in root.children:
        emit(c, 1)
    return "\n".join(lines) + "\n"


def main(args) -> int:
    from tesson import topology

    topo = topology.read(args.fsroot, include_isolated=not args.no_isolated)
    if args.format == "json":
        sys.stdout.write(json.dumps(topo.to_json()) + "\n")
    else:
        sys.stdout.write(render_text(topo))
    return 0
