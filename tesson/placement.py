"""Split a topology into N shards the way hwloc's ``hwloc_distrib`` does (pure; stdlib only).

The walk starts at the machine. Each child of an object gets a share of that object's N proportional
to its number of allowed PUs, rounded as hwloc rounds it::

    share = ceil((given_weight + weight) * n / total) - ceil(given_weight * n / total)

The walk stops at the unit's depth, at a leaf, or when a share is at most 1; every shard of that share
gets the child's whole cpuset; a child whose share is 0 merges its cpuset into the shard before it.
For ``pu``, ``core``, ``l3`` and ``package`` the result equals ``hwloc-distrib --to pu|core|l3cache|package N``
(and, like hwloc-distrib, a unit the machine does not show, e.g. ``l3`` without cache information, is
refused). For ``numa`` the same walk stops at the objects that lie within one NUMA node (of those with
CPUs of their own), so every shard is made of whole NUMA nodes; CPUs outside every allowed NUMA node
are taken whole at the highest object that holds no NUMA node's CPUs.

A shard's ``mems`` are the NUMA nodes whose CPUs (hwloc's locality, so memory-only nodes close to those
CPUs too) it uses.
"""

from __future__ import annotations

from tesson.errors import UsageError
from tesson.topology import Topology, _weight, bits

UNITS = ("pu", "core", "l3", "numa", "package")
ALIASES = {"node": "numa", "socket": "package", "l3cache": "l3", "thread": "pu"}


class Shard:
    """One shard of a plan: ``index``, ``cpus`` and ``mems`` (tuples of sorted ids); immutable.

    It behaves like ``@dataclass(frozen=True)`` (keyword or positional construction, equality, hash,
    repr, no assignment) without importing ``dataclasses``, which would cost ``run --dry-run`` more
    than the whole placement does.
    """

    __slots__ = ("index", "cpus", "mems")
    index: int
    cpus: tuple[int, ...]
    mems: tuple[int, ...]

    def __init__(self, index: int, cpus: tuple[int, ...], mems: tuple[int, ...]):
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "cpus", tuple(cpus))
        object.__setattr__(self, "mems", tuple(mems))

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}: Shard is frozen")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}: Shard is frozen")

    def _key(self):
        return (self.index, self.cpus, self.mems)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"Shard(index={self.index!r}, cpus={self.cpus!r}, mems={self.mems!r})"

    def __reduce__(self):
        return (Shard, self._key())


def canonical_unit(unit: str) -> str:
    """``node`` -> ``numa``, ``socket`` -> ``package``; raises UsageError for an unknown unit."""
    u = (unit or "").strip().lower()
    u = ALIASES.get(u, u)
    if u not in UNITS:
        raise UsageError(f"unknown unit {unit!r}: use one of pu, core, l3, numa (node), package (socket)")
    return u


def _numa_sets(topo: Topology) -> list[int]:
    """The NUMA nodes that are units: those with CPUs of their own (not memory-only nodes that
    hwloc gives the CPUs of their closest nodes)."""
    return [n.own for n in topo.numa_nodes if n.own]


def units_of(topo: Topology, unit: str) -> list[int]:
    """The cpusets of the allowed objects of a unit (one of :data:`UNITS`), in the tree's order."""
    if unit == "numa":
        return _numa_sets(topo)
    depth = topo.depth_of(unit)
    return [] if depth is None else [o.cpuset for o in topo.levels[depth] if o.cpuset]


def default_size(topo: Topology, unit: str) -> int:
    """How many objects of the unit (one of :data:`UNITS`) hold allowed CPUs: the default number of
    shards."""
    n = len(units_of(topo, unit))
    if n == 0:
        raise UsageError(f"this machine shows no {unit} objects; choose another unit")
    return n


def _make_stop(topo: Topology, unit: str):
    if unit == "numa":
        sets = _numa_sets(topo)
        covered = 0
        for s in sets:
            covered |= s

        def stop(obj) -> bool:
            # within one NUMA node; or holding no NUMA node's CPUs at all (CPUs whose node is not
            # allowed or not shown): no memory domain to split by, take them whole
            cs = obj.cpuset
            return not cs & covered or any(cs & s == cs for s in sets)

        return stop
    until = topo.depth_of(unit)
    if until is None:  # hwloc-distrib --to refuses a type the machine lacks, and so do we
        raise UsageError(f"this machine shows no {unit} objects; choose another unit")
    return lambda obj: obj.depth >= until


def distrib(roots, n: int, stop) -> list[int]:
    """hwloc_distrib over ``roots`` (objects with .cpuset and .children): n cpusets (ints)."""
    out: list[int] = []
    _distrib(roots, n, stop, out)
    return out


def _distrib(roots, n: int, stop, out: list[int]) -> None:
    tot = 0
    weights = []
    for r in roots:
        w = _weight(r.cpuset)
        weights.append(w)
        tot += w
    given_w = 0
    for r, w in zip(roots, weights):
        if not w:
            continue
        chunk = ((given_w + w) * n + tot - 1) // tot - (given_w * n + tot - 1) // tot
        if not r.children or chunk <= 1 or stop(r):
            if chunk:
                out.extend([r.cpuset] * chunk)
            else:
                out[-1] |= r.cpuset  # the first chunk is never empty
        else:
            _distrib(r.children, chunk, stop, out)
        given_w += w


def plan(topo: Topology, unit: str = "core", size: int | None = None) -> list[Shard]:
    """N shards (default: one per unit), each with its CPUs and the NUMA nodes they belong to.

    ``unit`` is one of :data:`UNITS` or an alias (:func:`canonical_unit`)."""
    unit = canonical_unit(unit)
    if size is None:
        size = default_size(topo, unit)
    if size < 1:
        raise UsageError(f"the number of shards must be at least 1, got {size}")
    sets = distrib([topo.root], size, _make_stop(topo, unit))
    shards = []
    for i, cs in enumerate(sets):
        shards.append(Shard(i, tuple(bits(cs)), tuple(topo.mems_for(cs))))
    return shards
