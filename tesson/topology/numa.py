"""NUMA nodes and their distances, read from sys/devices/system/node as hwloc 2.x's look_sysfsnode
reads them: each node's CPUs and memory, the locality hwloc gives memory-only nodes (HMAT initiators,
else the closest nodes by SLIT distance), and hwloc's Groups of nodes close to each other."""

from __future__ import annotations

from tesson.cpulist import bits
from tesson.topology.model import NumaNode
from tesson.topology.sysfs import FS


def meminfo_total(fs: FS, path: str) -> int:
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


def discover(fs: FS) -> tuple[list[NumaNode] | None, list[tuple[int, frozenset]]]:
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
        slots.append(NumaNode(nid, cpuset, meminfo_total(fs, f"{base}/node{nid}/meminfo")))
    gpu_nodes = _nvidia_gpu_nodes(fs)
    slots = [None if n is not None and n.id in gpu_nodes else n for n in slots]
    if not any(slots):
        return None, []
    distances = _node_distances(fs, ids)
    if distances:
        for node, row in zip(slots, distances):
            if node is not None:
                node.distances = dict(zip(ids, row))
    _fix_numa_locality(fs, ids, slots, distances)
    return [n for n in slots if n is not None], _distance_groups(slots, distances)


def _nvidia_gpu_nodes(fs: FS) -> set[int]:
    """The NUMA nodes that hold only an NVIDIA GPU's memory, which hwloc hides (its default, without
    HWLOC_KEEP_NVIDIA_GPU_NUMA_NODES=1; tesson never keeps them: no shard's memory goes there).

    The driver names them in /proc/driver/nvidia/gpus/PCI-ADDRESS/numa_status ("Node: 2"). hwloc
    reads the file's first 255 bytes and the number after "Node:" as atoi() does (no digits: 0).
    A hidden node's memory is not counted, and it drops out of the distances as hwloc drops it.
    """
    base = "/proc/driver/nvidia/gpus"
    out = set()
    for gpu in fs.listdir(base):
        data = fs.read_head(f"{base}/{gpu}/numa_status", 255)
        if data is None:
            continue
        data = data.split(b"\0", 1)[0]
        at = data.find(b"Node:")
        if at < 0:
            continue
        value = data[at + 5 :].lstrip(b" \t").lstrip()
        digits = len(value) - len(value.lstrip(b"0123456789"))
        out.add(int(value[:digits]) if digits else 0)
    return out


def _node_distances(fs: FS, ids: list[int]) -> list[list[int]] | None:
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


def _fix_numa_locality(fs: FS, ids: list[int], slots: list, distances) -> None:
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
        gids[i], size = gid, 1
        first: int | None = i
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


