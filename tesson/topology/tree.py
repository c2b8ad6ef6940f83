"""Building the tree from what the Linux backend found, as hwloc's core does: insert objects by
cpuset, hang NUMA nodes where hwloc hangs them, add the distance Groups, merge away Groups that bring
no structure, and take out the CPUs the process may not use."""

from __future__ import annotations

from tesson.cpulist import bits, first, weight
from tesson.topology.model import GROUPS, RANK, NumaNode, Obj


def build(present: int, listed: int, objs, numa_sets: list[int]) -> Obj:
    """Nest the objects by cpuset, as hwloc's insert-by-cpuset does (bigger sets first; for equal
    sets, the kind order of RANK). An object that overlaps another without nesting is refused, as
    hwloc refuses it."""
    root = Obj("machine", 0, present, None, listed)
    items = [Obj(kind, idx, cs, attrs) for kind, idx, cs, attrs in objs if cs]
    # NUMA nodes become groups that bring structure where they split something (hwloc's memory
    # groups); those equal to another object change nothing and are dropped later
    for raw in numa_sets:
        if raw & present and raw & listed != listed:  # hwloc memory groups have no index
            items.append(Obj("numa", -1, raw & present, None, raw & listed))
    rank = RANK
    items.sort(key=lambda o: (-weight(o.complete), rank[o.kind]))
    owner: dict[int, Obj] = {}  # CPU -> the smallest object so far that holds it
    for obj in items:
        cpus = bits(obj.cpuset)
        parent = owner.get(cpus[0], root)
        if any(owner.get(c, root) is not parent for c in cpus):
            continue  # overlaps an object without nesting in it
        obj.parent = parent
        parent.children.append(obj)
        for c in cpus:
            owner[c] = obj
    stack = [root]
    while stack:
        o = stack.pop()
        if len(o.children) > 1:
            o.children.sort(key=lambda c: c.cpuset & -c.cpuset)
        stack.extend(o.children)
    return root




def prune_groups(root: Obj) -> None:
    """Merge away groups that bring no structure: a group with the same CPUs and NUMA nodes as its
    parent or as its only child (memory groups that hwloc merges at insertion, hwloc's
    merge_useless_child for the others)."""
    nodesets: dict[int, frozenset] = {}
    for o in reversed(root.walk()):
        ids = frozenset(n.id for n in o.memory)
        for c in o.children:
            ids |= nodesets[id(c)]
        nodesets[id(o)] = ids

    stack = [root]
    while stack:
        o = stack.pop()
        changed = True
        while changed:
            changed = False
            new = []
            for c in o.children:
                if c.kind not in GROUPS or not c.complete:
                    new.append(c)
                    continue
                if c.kind == "distance":
                    same_parent = len(o.children) == 1 and c.complete == o.complete and nodesets[id(c)] == nodesets[id(o)]
                    same_child = (c.children[0] if len(c.children) == 1 and not c.memory
                                  and c.children[0].complete == c.complete else None)
                else:
                    same_parent = c.complete == o.complete
                    same_child = next((g for g in c.children if g.complete == c.complete), None)
                if not same_parent and same_child is None:
                    new.append(c)
                    continue
                # merged away: its NUMA nodes go to the object it duplicates
                (o if same_parent or same_child is None else same_child).memory[:0] = c.memory
                for g in c.children:
                    g.parent = o
                new.extend(c.children)
                changed = True
            if changed:
                new.sort(key=lambda x: first(x.complete) if x.complete else 1 << 30)
                o.children = new
        stack.extend(o.children)


def restrict(root: Obj, allowed: int) -> None:
    """Remove disallowed PUs (hwloc's default without INCLUDE_DISALLOWED): objects left without CPUs
    go, unless they hold allowed memory (hwloc keeps a package whose NUMA node may still be used)."""
    keep: set[int] = set()
    for o in reversed(root.walk()):  # children first
        if o.cpuset & allowed or o.memory or any(id(c) in keep for c in o.children):
            keep.add(id(o))
    stack = [root]
    while stack:
        o = stack.pop()
        o.cpuset &= allowed
        o.children = [c for c in o.children if id(c) in keep]
        stack.extend(o.children)


def attach_memory(root: Obj, numa: list[NumaNode]) -> None:
    """For display: hang each NUMA node where hwloc does: going down from the machine, on the first
    object with exactly its CPUs, else on the smallest object that holds them (memory-only: root)."""
    for n in numa:
        target = root
        if n.cpuset:
            while True:
                child = next((c for c in target.children if c.cpuset & n.cpuset == n.cpuset), None)
                if child is None:
                    break
                target = child
                if child.cpuset == n.cpuset:
                    break
        else:  # no CPUs at all: hwloc gives it a memory Group of its own under the machine
            target = Obj("numa", -1, 0)
            target.parent = root
            root.children.append(target)
        target.memory.append(n)


def _subtree_nodes(obj: Obj) -> frozenset:
    return frozenset(n.id for o in obj.walk() for n in o.memory)


def insert_distance_group(root: Obj, cpuset: int, node_ids: frozenset) -> None:
    """Insert one of hwloc's distance Groups by its CPUs (and, where the CPUs are the same as an
    object's, by its NUMA nodes), adopting the children it covers."""
    parent = root
    while True:
        if parent.cpuset == cpuset:
            have = _subtree_nodes(parent)
            if have == node_ids:
                return  # the same object: merged
            if not node_ids < have:
                return  # hwloc would refuse it (conflicting node sets)
        child = next((c for c in parent.children if c.cpuset & cpuset == cpuset and c.cpuset), None)
        if child is None or (child.cpuset == cpuset and node_ids > _subtree_nodes(child)):
            break
        parent = child
    group = Obj("distance", -1, cpuset)
    inside = [c for c in parent.children if c.cpuset and c.cpuset & cpuset == c.cpuset]
    if any(c.cpuset & cpuset and c not in inside for c in parent.children):
        return  # overlaps a child without containing it: hwloc refuses such a group
    parent.children = [c for c in parent.children if c not in inside] + [group]
    parent.children.sort(key=lambda c: first(c.complete) if c.complete else 1 << 30)
    group.parent = parent
    group.children = inside
    for c in inside:
        c.parent = group
