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

from tesson.cpulist import bits, weight
from tesson.errors import UsageError

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:  # nor the topology where only a Shard is wanted (tesson.group rebuilds them from labels)
    from collections.abc import Callable, Sequence

    from tesson.topology import Topology
    from tesson.topology.model import Obj

    Stop = Callable[[Obj], bool]  # where the walk stops descending

UNITS = ("pu", "core", "l3", "numa", "package")

# run -n bounds. More than SHARDS_PER_CPU shards per allowed CPU is refused without --force; above
# MAX_SHARDS always. Every container carries the whole plan in a label (tesson.labels.PLAN), so a
# group's labels grow with the square of its size: 4096 shards keep them, and the plan in memory,
# to tens of megabytes on the daemon (and a run's worst case to 4096 containers).
SHARDS_PER_CPU = 4
MAX_SHARDS = 4096
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

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: Shard is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: Shard is frozen")

    def _key(self) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        return (self.index, self.cpus, self.mems)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Shard) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Shard(index={self.index!r}, cpus={self.cpus!r}, mems={self.mems!r})"

    def __reduce__(self) -> tuple[type[Shard], tuple[int, tuple[int, ...], tuple[int, ...]]]:
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


def units_of(topo: Topology, unit: str, restrict: int | None = None) -> list[int]:
    """The cpusets of the allowed objects of a unit (one of :data:`UNITS`), in the tree's order
    (within ``restrict``)."""
    if unit == "numa":
        sets = _numa_sets(topo)
    else:
        depth = topo.depth_of(unit)
        sets = [] if depth is None else [o.cpuset for o in topo.levels[depth] if o.cpuset]
    if restrict is not None:
        sets = [s & restrict for s in sets if s & restrict]
    return sets


def default_size(topo: Topology, unit: str, restrict: int | None = None) -> int:
    """How many objects of the unit hold allowed CPUs (within ``restrict``): the default number of
    shards."""
    n = len(units_of(topo, unit, restrict))
    if n == 0:
        where = " near the device(s)" if restrict is not None else ""
        raise UsageError(f"this machine shows no {unit} objects{where}; choose another unit")
    return n


def check_size(size: int | None, ncpus: int, force: bool = False) -> None:
    """Refuse (UsageError, exit 2) a ``-n`` that makes no sense for ``ncpus`` allowed CPUs: above
    :data:`MAX_SHARDS`, or, without ``force``, above :data:`SHARDS_PER_CPU` per CPU. Checked before
    the plan is made (a plan's cost grows with its size)."""
    if size is None:
        return
    if size > MAX_SHARDS:
        raise UsageError(f"-n {size}: at most {MAX_SHARDS} shards per group, even with --force")
    limit = SHARDS_PER_CPU * max(ncpus, 1)
    if size > limit and not force:
        raise UsageError(
            f"-n {size}: more than {SHARDS_PER_CPU} shards per allowed CPU ({ncpus} CPUs: at most {limit}); "
            f"add --force to run up to {MAX_SHARDS}"
        )


def _make_stop(topo: Topology, unit: str, mask: int) -> Stop:
    if unit == "numa":
        sets = [s & mask for s in _numa_sets(topo) if s & mask]
        covered = 0
        for s in sets:
            covered |= s

        def stop(obj: Obj) -> bool:
            # within one NUMA node; or holding no NUMA node's CPUs at all (CPUs whose node is not
            # allowed or not shown): no memory domain to split by, take them whole
            cs = obj.cpuset & mask
            return not cs & covered or any(cs & s == cs for s in sets)

        return stop
    until = topo.depth_of(unit)
    if until is None:  # hwloc-distrib --to refuses a type the machine lacks, and so do we
        raise UsageError(f"this machine shows no {unit} objects; choose another unit")
    return lambda obj: obj.depth >= until


def distrib(roots: Sequence[Obj], n: int, stop: Stop, mask: int = -1) -> list[int]:
    """hwloc_distrib over ``roots`` (objects with .cpuset and .children): n cpusets (ints), each
    object seen as its CPUs within ``mask`` (-1: all)."""
    out: list[int] = []
    _distrib(roots, n, stop, out, mask)
    return out


def _distrib(roots: Sequence[Obj], n: int, stop: Stop, out: list[int], mask: int) -> None:
    tot = 0
    sets = []
    for r in roots:
        cs = r.cpuset & mask
        sets.append(cs)
        tot += weight(cs)
    pairs = list(zip(roots, sets))
    if mask != -1:  # hwloc's restricted tree orders siblings by their first CPU left (see plan)
        pairs = sorted(pairs, key=lambda p: (p[1] & -p[1]) if p[1] else 0)
    given_w = 0
    for r, cs in pairs:
        if not cs:
            continue
        w = weight(cs)
        chunk = ((given_w + w) * n + tot - 1) // tot - (given_w * n + tot - 1) // tot
        if not r.children or chunk <= 1 or stop(r):
            if chunk:
                out.extend([cs] * chunk)
            else:
                out[-1] |= cs  # the first chunk is never empty
        else:
            _distrib(r.children, chunk, stop, out, mask)
        given_w += w


def plan(topo: Topology, unit: str = "core", size: int | None = None, restrict: int | None = None) -> list[Shard]:
    """N shards (default: one per unit), each with its CPUs and the NUMA nodes they belong to.

    ``restrict`` (a CPU mask, e.g. the CPUs local to a device: tesson.near): the plan is
    ``hwloc-distrib --restrict MASK --to UNIT N``. hwloc restricts its tree to the mask first
    (objects keep only their CPUs inside it, those left without any drop out) and then walks it as
    above; walking the whole tree while weighing every object by its CPUs inside the mask is the
    same walk, since objects without such CPUs get no share and are never entered, except for one
thing: in the restricted tree hwloc orders siblings by the first CPU they keep (restricted to CPUs
1-5,7, a package holding 2,4 comes after one holding 1,3,5,7), so the walk sorts them so. Hazards: the
    default N counts only the units that hold CPUs inside the mask; an empty mask is refused.
    """
    unit = canonical_unit(unit)
    mask = -1 if restrict is None else restrict & topo.cpuset
    if restrict is not None and not mask:
        raise UsageError("no allowed CPU is local to the device(s) asked for")
    if size is None:
        size = default_size(topo, unit, restrict)
    if size < 1:
        raise UsageError(f"the number of shards must be at least 1, got {size}")
    sets = distrib([topo.root], size, _make_stop(topo, unit, mask), mask)
    shards = []
    for i, cs in enumerate(sets):
        mems = topo.mems_for(cs)
        if restrict is not None:
            mems = memory_nodes(topo, mems)
        shards.append(Shard(i, tuple(bits(cs)), tuple(mems)))
    return shards


def memory_nodes(topo: Topology, node_ids: list[int]) -> list[int]:
    """The nodes that can give memory for CPUs of these nodes: a node without memory (CPUs on a
    memory-less node, a device's node with no DIMMs) is replaced by the nodes with memory nearest to
    it by SLIT distance (all nodes with memory when the distances are unknown), since the kernel
    refuses a cpuset.mems made only of memory-less nodes. Used for ``--near`` plans: the device's
    NUMA nodes are the memory asked for, so they must be nodes memory can come from."""
    by_id = {n.id: n for n in topo.numa_nodes}
    with_memory = [n for n in topo.numa_nodes if n.memory_bytes > 0]
    out: set[int] = set()
    for nid in node_ids:
        node = by_id.get(nid)
        if node is None or node.memory_bytes > 0:
            out.add(nid)
            continue
        known = [m for m in with_memory if m.id in node.distances]
        if known:
            low = min(node.distances[m.id] for m in known)
            out.update(m.id for m in known if node.distances[m.id] == low)
        else:
            out.update(m.id for m in with_memory)
    return sorted(out)
