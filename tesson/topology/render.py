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
    }


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


def render_text(topo) -> str:
    """lstopo's console view (``lstopo-no-graphics -p``), less instruction caches, plus each
    object's allowed CPUs."""
    lines: list[str] = []
    total = sum(n.memory_bytes for n in topo.numa_nodes)
    head = f"Machine ({_size(total)} total, {len(topo.pus)} PUs allowed: {cpulist.format(topo.pus)})"

    group_levels = [d for d, level in enumerate(topo.levels) if level[0].kind in GROUP_SUBTYPES]
    group_index = {d: i for i, d in enumerate(group_levels)}

    def emit(obj, indent: int, label: str | None = None) -> None:
        parts = [label or _label(obj, group_index)]
        # as lstopo does: an object without memory and with a single child shares its line
        while len(obj.children) == 1 and not obj.memory:
            obj = obj.children[0]
            parts.append(_label(obj, group_index))
        text = " + ".join(parts)
        if obj.kind != "pu" and obj.children:
            text += f"  [cpus {cpulist.format(obj.cpus)}]"
        lines.append("  " * indent + text)
        for n in obj.memory:
            lines.append("  " * (indent + 1) + _numa_line(n))
        for c in obj.children:
            emit(c, indent + 1)

    emit(topo.root, 0, head)
    return "\n".join(lines) + "\n"
