"""``run --exclusive``: pick N whole units from the free CPUs, packed or spread (pure; stdlib only).

The rule follows Kubernetes' static CPU Manager (``cpu_assignment.go``, ``takeByTopologyNUMAPacked``):
take whole packages, then whole NUMA nodes, then whole cores, then single threads, so that a group
spans as few packages, NUMA nodes and L3 domains as it can. tesson hands out *units* (``-u``), not
single CPUs, so the same walk runs over units:

1. A unit is *free* when all its allowed CPUs are free (no exclusive group holds any of them) and,
   with ``--cpus``/``--near``, all lie inside that mask: an exclusive unit is a whole hardware
   object, so ``-u core`` never hands out half a core and no other group ever gets the SMT sibling
   of an exclusive core (a core with one sibling held or outside ``--cpus`` is not free).
2. The levels above the unit that hold whole units (package, NUMA node, L3, core; those a unit does
   not fit inside are skipped) are ordered coarse to fine by their number of objects (a machine whose
   NUMA nodes hold several packages walks NUMA first, as the CPU Manager swaps them too).
3. At each level, with ``need`` units still to pick: if some object holds at least ``need`` free
   units, go into the one holding the *fewest* such units (best fit; the first in the tree's order
   on a tie) and repeat one level down; otherwise take every free unit of the object holding the
   most (a whole package, a whole NUMA node...) and look again with what is left. At the last level
   the units are taken in the tree's order.

Where tesson differs from the CPU Manager: for the rest after the whole objects the CPU Manager takes
CPUs from the socket/NUMA node with the fewest free CPUs first even when the rest does not fit
there (asked for 3 with nodes that have 2 and 4 free, it spans both); best fit goes to the node with
4 and spans one. Both take a partly used core before a whole one for ``-u pu``, which keeps whole
cores for ``-u core`` groups.

``spread`` (``--spread``, the CPU Manager's ``distribute-cpus-across-numa`` option): the N units are
shared out evenly over every NUMA node with free units (a node with fewer free units than its share
gives all it has and the rest go to the others; an odd one goes to the node with the most free
units), then picked inside each node by the packed rule.

Hazards: a unit is never split, so N counts units, not CPUs; the free units are counted after
``--cpus`` (a NUMA node half inside ``--cpus`` is not a free ``numa`` unit); the shards come back in
the tree's order, whatever order they were picked in; memory nodes follow the CPUs
(:func:`tesson.placement.memory_nodes`, so a CPU on a memory-less node gets its nearest memory).
"""

from __future__ import annotations

from tesson.cpulist import bits
from tesson.errors import TessonError
from tesson.placement import Shard, _numa_sets, canonical_unit, memory_nodes, units_of

LEVELS = ("package", "numa", "l3", "core")


class NoFreeUnits(TessonError):
    """Fewer free units than asked for: ``free`` of ``total`` (the caller names who holds the rest)."""

    def __init__(self, unit: str, asked: int, free: int, total: int):
        self.unit, self.asked, self.free, self.total = unit, asked, free, total
        super().__init__(f"{asked} exclusive {unit} unit{'s' if asked != 1 else ''} asked for, "
                         f"{free} of {total} free")


def free_units(topo, unit: str, free: int, restrict: int | None = None) -> tuple[list[int], int]:
    """The cpusets of the unit's objects that are wholly free (and wholly inside ``restrict``), in
    the tree's order, and how many objects of that unit the machine allows in all."""
    every = units_of(topo, unit)
    inside = free if restrict is None else free & restrict
    return [s for s in every if s & inside == s], len(every)


def _objects(topo, kind: str) -> list[int]:
    return _numa_sets(topo) if kind == "numa" else units_of(topo, kind)


def _owners(objs: list[int], units: list[int]) -> list[int] | None:
    """For each unit, the index of the object holding it whole; None when one does not fit inside a
    single object (that level is not above the unit)."""
    out = []
    for u in units:
        for i, o in enumerate(objs):
            if u & o == u:
                out.append(i)
                break
        else:
            return None
    return out


def levels_above(topo, unit: str, units: list[int]) -> list[tuple[str, list[int]]]:
    """The levels above the unit, coarse to fine: ``(kind, owner index per unit)``."""
    found = []
    for rank, kind in enumerate(LEVELS):
        if kind == unit:
            continue
        objs = _objects(topo, kind)
        owners = _owners(objs, units)
        if owners is None or len(set(owners)) == len(units) and len(units) > 1 and kind != "numa":
            # not above the unit, or one object per unit: nothing to pack by (NUMA is kept for --spread)
            continue
        found.append((len(objs), rank, kind, owners))  # fewer objects: a coarser level
    found.sort()
    return [(kind, owners) for _, _, kind, owners in found]


def _pick(cands: list[int], need: int, levels: list, li: int) -> list[int]:
    """Best-fit descent (rule 3) over unit indices ``cands`` (in tree order)."""
    if need >= len(cands):
        return list(cands)
    if li == len(levels):
        return cands[:need]
    owners = levels[li][1]
    groups: dict[int, list[int]] = {}
    for u in cands:
        groups.setdefault(owners[u], []).append(u)
    left = list(groups.values())
    out: list[int] = []
    while need > 0:
        fits = [g for g in left if len(g) >= need]
        if fits:
            best = min(fits, key=len)
            out += _pick(best, need, levels, li + 1)
            break
        most = max(left, key=len)
        out += most
        need -= len(most)
        left.remove(most)
    return out


def _shares(sizes: list[int], n: int) -> list[int]:
    """n shared out as evenly as the caps ``sizes`` allow (water filling)."""
    give = [0] * len(sizes)
    open_ = [i for i, s in enumerate(sizes) if s > 0]
    while n > 0 and open_:
        each = n // len(open_)
        if each == 0:  # fewer left than nodes: one more each to the nodes with the most room
            for i in sorted(open_, key=lambda i: (-(sizes[i] - give[i]), i))[:n]:
                give[i] += 1
            break
        for i in list(open_):
            take = min(each, sizes[i] - give[i])
            give[i] += take
            n -= take
            if give[i] == sizes[i]:
                open_.remove(i)
    return give


def pack(topo, unit: str, n: int | None, free: int, spread: bool = False, restrict: int | None = None) -> list[Shard]:
    """N exclusive shards of one whole unit each, from the CPUs in ``free`` (an int mask; the
    machine's allowed CPUs less those exclusive groups hold), within ``restrict`` when given.

    ``n`` None: every free unit. Raises :class:`NoFreeUnits` when fewer are free (also for none).
    """
    unit = canonical_unit(unit)
    units, total = free_units(topo, unit, free, restrict)
    if n is None:
        n = len(units)
    if n < 1 or n > len(units):
        raise NoFreeUnits(unit, n if n >= 1 else 1, len(units), total)
    levels = levels_above(topo, unit, units)
    idx = list(range(len(units)))
    if spread:
        numa_at = next((i for i, (kind, _) in enumerate(levels) if kind == "numa"), None)
        if numa_at is None:
            chosen = _pick(idx, n, levels, 0)
        else:
            owners = levels[numa_at][1]
            nodes: dict[int, list[int]] = {}
            for u in idx:
                nodes.setdefault(owners[u], []).append(u)
            groups = list(nodes.values())
            below = levels[numa_at + 1:]
            chosen = []
            for g, k in zip(groups, _shares([len(g) for g in groups], n)):
                chosen += _pick(g, k, below, 0)
    else:
        chosen = _pick(idx, n, levels, 0)
    shards = []
    for i, u in enumerate(sorted(chosen)):
        cs = units[u]
        shards.append(Shard(i, tuple(bits(cs)), tuple(memory_nodes(topo, topo.mems_for(cs)))))
    return shards
