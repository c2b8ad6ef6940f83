"""Who holds which CPU: the exclusive groups, the shared pool, and the live re-pins between them
(pure; stdlib only, so ``run --dry-run`` stays quick).

The labels on the daemon's containers are the only state (tesson keeps none of its own):

- an **exclusive** group (``io.tesson.exclusive``: ``packed`` or ``spread``) holds the CPUs of its
  plan (``io.tesson.plan``) for as long as any of its containers exists, running or stopped; those
  CPUs are never re-pinned and no other group is planned on them;
- every other group is **shared**: its shards are ``hwloc-distrib --restrict POOL`` over the *pool*,
  the allowed CPUs (within its ``io.tesson.cpus-restrict``, when it has one, and less the kernel's
  isolated CPUs for a group run with ``--no-isolated``, ``io.tesson.no-isolated``) that no
  exclusive group holds. Its pins are thus a function of the topology and of the exclusive groups: when those
  change, :func:`moves` tells which shards to re-pin live (``docker update --cpuset-cpus``), and
  ``tesson topology --groups`` shows the pins they have now, not the ones they started with.

Hazards: the label plan of a shared group is the plan made when it started; after re-pins it is
stale, and only :func:`effective` is current. A group whose plan names CPUs this topology does not
have, or that was planned for another machine (``io.tesson.machine``: a ``--fsroot`` copy of another
host's sysfs), or that a tesson without shared pools made (no ``io.tesson.machine``: its user pinned
it over the whole machine, and re-pinning it would change what they set) is *foreign*: it is shown
with its label plan, holds nothing and is never re-pinned (``run --exclusive`` warns when it takes
CPUs such a group uses). A pool that leaves a shared group no CPU at all is
refused (:class:`NoCpuLeft`) before anything moves; a pool that leaves it fewer CPUs than shards
gives several shards the same CPU, as hwloc-distrib does.
"""

from __future__ import annotations

import json

from tesson import cpulist
from tesson import labels as L
from tesson.errors import TessonError
from tesson.placement import Shard, canonical_unit, plan


def machine_id(topo) -> str:
    """A short fingerprint of the machine a plan is made for: all its CPUs (allowed or online or
    not) and its NUMA nodes' ids, so a tesson in a cgroup-limited container and one on the host
    agree. Only what cannot change while the machine runs: a node's memory does (a VM's balloon
    takes pages from MemTotal, memory is hot-plugged), and a fingerprint that moved with it made
    every group planned before look foreign, so the pool ignored the exclusive groups' CPUs."""
    import zlib

    nodes = ",".join(str(n.id) for n in topo.numa_nodes)
    return f"m{zlib.crc32(f'{topo.root.complete:x}/{nodes}'.encode()):08x}"


def _machine_id_with_memory(topo) -> str:
    """The fingerprint tesson wrote before (the nodes' memory sizes in it), still recognised for
    the groups it labelled: it matches as long as their memory has not changed since."""
    import zlib

    nodes = ",".join(f"{n.id}:{n.memory_bytes}" for n in topo.numa_nodes)
    return f"{zlib.crc32(f'{topo.root.complete:x}/{nodes}'.encode()):08x}"


def same_machine(topo, label: str | None, mid: str | None = None) -> bool:
    """Whether a group's ``io.tesson.machine`` names ``topo``'s machine (``mid``: its
    :func:`machine_id`, when the caller has it already)."""
    if not label:
        return False
    if label.startswith("m"):
        return label == (mid or machine_id(topo))
    return label == _machine_id_with_memory(topo)


class Claim:
    """One group as the labels describe it: ``name``, ``exclusive`` ("packed", "spread" or ""),
    ``unit``, ``restrict`` (int mask or None), ``shards`` (the label plan), ``limits`` (by shard
    index) and ``limits_auto`` (the keys computed from the CPUs), ``containers`` (shard index ->
    container ids), ``no_isolated`` (run --no-isolated) and ``foreign`` (see the module's doc).

    Made from labels, it keeps the plan as masks (``plan``: one ``(cpus, mems)`` pair per shard)
    and makes its :class:`Shard` list only when asked: a dry run next to 50 groups needs their
    CPUs, not their shards."""

    __slots__ = ("name", "exclusive", "unit", "restrict", "_shards", "_plan", "limits", "containers", "foreign",
                 "no_isolated", "limits_auto")

    def __init__(self, name, exclusive="", unit="core", restrict=None, shards=(), limits=(), containers=None,
                 no_isolated=False, limits_auto=(), plan: list[tuple[int, int]] | None = None):
        self.name, self.exclusive, self.unit, self.restrict = name, exclusive, unit, restrict
        self._plan = plan
        self._shards: list[Shard] | None = None if plan is not None else list(shards)
        self.limits = list(limits)
        self.containers: dict[int, list[str]] = containers if containers is not None else {}
        self.foreign = False
        self.no_isolated = no_isolated
        self.limits_auto = list(limits_auto)

    @property
    def shards(self) -> list[Shard]:
        if self._shards is None:
            self._shards = [Shard(i, tuple(cpulist.bits(c)), tuple(cpulist.bits(m)))
                            for i, (c, m) in enumerate(self._plan or ())]
        return self._shards

    @property
    def size(self) -> int:
        return len(self._plan or ()) if self._shards is None else len(self._shards)

    @property
    def cpuset(self) -> int:
        m = 0
        if self._shards is None:
            for cpus, _mems in self._plan or ():
                m |= cpus
        else:
            for s in self._shards:
                m |= cpulist.mask_of(s.cpus)
        return m

    def __repr__(self) -> str:  # pragma: no cover
        kind = self.exclusive or "shared"
        return f"<Claim {self.name} {kind} {self.unit} x{self.size}>"


def claim_from_labels(labels: dict) -> Claim | None:
    """A group's claim from the labels any of its containers carries; None when they are not a
    complete tesson group's."""
    try:
        raw = json.loads(labels[L.PLAN])
        plan = [(cpulist.list_to_mask(c), cpulist.list_to_mask(m)) for c, m in raw]
        restrict = labels.get(L.CPUS_RESTRICT)
        limits = json.loads(labels.get(L.LIMITS) or "[]")
        unit = canonical_unit(labels.get(L.UNIT) or "core")
        return Claim(labels[L.GROUP], labels.get(L.EXCLUSIVE, ""), unit,
                     None if restrict is None else cpulist.list_to_mask(restrict), (),
                     limits if isinstance(limits, list) else [], no_isolated=L.no_isolated(labels),
                     limits_auto=L.limits_auto(labels), plan=plan)
    except (KeyError, ValueError, TypeError, TessonError):
        return None


def _rank(labels: dict) -> tuple[int, int]:
    """Which container's labels are the group's: the newest spec record (a scale or update wrote
    it), else a shard's, else any (as tesson.group rebuilds a group)."""
    role = labels.get(L.ROLE)
    if role == L.ROLE_SPEC:
        gen = labels.get(L.GENERATION) or "0"
        return 2, int(gen) if gen.isdigit() else 0
    return (1 if role == L.ROLE_SHARD else 0), 0


def mark_foreign(topo, claim: Claim, labels: dict, mid: str | None = None) -> Claim:
    """Mark ``claim`` foreign when its plan names CPUs ``topo`` does not have, or it was planned for
    another machine, or by a tesson without the pool (no ``io.tesson.machine``). ``mid``:
    ``machine_id(topo)`` when the caller has it already."""
    if claim.cpuset & ~topo.cpuset or not same_machine(topo, labels.get(L.MACHINE), mid):
        claim.foreign = True
    return claim


def claims_from_containers(summaries: list[dict], topo=None) -> list[Claim]:
    """Every group's claim from a container listing (``docker ps -a`` summaries: ``Labels``, ``Id``),
    by group name. With ``topo``, groups whose plan names CPUs it does not have are ``foreign``."""
    by_group: dict[str, dict] = {}
    ids: dict[str, dict[int, list[str]]] = {}
    for c in summaries:
        labels = c.get("Labels") or {}
        name = labels.get(L.GROUP)
        if not name:
            continue
        role = labels.get(L.ROLE)
        if role == L.ROLE_SHARD and labels.get(L.SHARD, "").isdigit():
            ids.setdefault(name, {}).setdefault(int(labels[L.SHARD]), []).append(c.get("Id", ""))
        if name not in by_group or _rank(labels) > _rank(by_group[name]):
            by_group[name] = labels
    out = []
    mid = machine_id(topo) if topo is not None else None
    for name in sorted(by_group):
        claim = claim_from_labels(by_group[name])
        if claim is None:
            continue
        claim.containers = ids.get(name, {})
        if topo is not None:
            mark_foreign(topo, claim, by_group[name], mid)
        out.append(claim)
    return out


def exclusive_mask(claims: list[Claim]) -> int:
    """The CPUs exclusive groups hold."""
    m = 0
    for c in claims:
        if c.exclusive and not c.foreign:
            m |= c.cpuset
    return m


def pool(topo, claims: list[Claim]) -> int:
    """The shared pool: the allowed CPUs no exclusive group holds."""
    return topo.cpuset & ~exclusive_mask(claims)


def own_cpus(topo, restrict: int | None, no_isolated: bool = False) -> int | None:
    """The CPUs a group may use at all, as a mask: its ``restrict`` (run --cpus/--near) within the
    allowed CPUs, less the kernel's isolated ones for a run --no-isolated group (``topo.isolated``:
    the topology is read whole, isolated CPUs included, wherever groups are planned next to each
    other, since another group may hold them); None when nothing restricts it (all allowed CPUs)."""
    iso = topo.isolated & topo.cpuset if no_isolated else 0
    if restrict is None and not iso:
        return None
    return (topo.cpuset if restrict is None else restrict & topo.cpuset) & ~iso


def shared_restrict(topo, restrict: int | None, pool_mask: int, no_isolated: bool = False) -> int | None:
    """The ``restrict`` mask a shared group is planned with: None (today's whole-machine plan) when
    nothing restricts it, else its own CPUs (:func:`own_cpus`: all allowed ones by default) within
    the pool."""
    own = own_cpus(topo, restrict, no_isolated)
    if own is None and pool_mask == topo.cpuset:
        return None
    return (topo.cpuset if own is None else own) & pool_mask


def shared_plan(topo, unit: str, size: int | None, restrict: int | None, pool_mask: int,
                no_isolated: bool = False) -> list[Shard] | None:
    """A shared group's shards over the pool (hwloc-distrib --restrict); None when its CPUs within
    the pool are none at all."""
    r = shared_restrict(topo, restrict, pool_mask, no_isolated)
    if r == 0:
        return None
    return plan(topo, unit, size, restrict=r)


def effective(topo, claims: list[Claim], plans: dict | None = None) -> dict[str, list[Shard] | None]:
    """The pins every group has now: exclusive and foreign groups their label plan, shared ones
    their plan over the pool (hwloc-distrib --restrict; None: no CPU left for it). Groups alike
    share one plan, since a plan depends only on its unit, size and CPUs (50 shared groups of a
    few sizes need a few plans); ``plans`` keeps them across calls on the same topology (the
    returned lists are shared: read them, do not change them)."""
    p = pool(topo, claims)
    plans = {} if plans is None else plans
    out: dict[str, list[Shard] | None] = {}
    for c in claims:
        if c.exclusive or c.foreign or not c.size:
            out[c.name] = c.shards
            continue
        r = shared_restrict(topo, c.restrict, p, c.no_isolated)
        key = (c.unit, c.size, r)
        try:
            if key not in plans:
                plans[key] = None if r == 0 else plan(topo, c.unit, c.size, restrict=r)
            out[c.name] = plans[key]
        except TessonError:  # a unit this machine lacks: planned elsewhere, leave it be
            c.foreign = True
            out[c.name] = c.shards
    return out


class Move:
    """One live re-pin: shard ``index`` of ``group`` from (``old_cpus``, ``old_mems``) to
    (``cpus``, ``mems``); ``containers`` are its container ids (filled from the claim); ``limits``
    the shard's 'auto' limits computed for the new CPUs ({}: none follow it)."""

    __slots__ = ("group", "index", "old_cpus", "old_mems", "cpus", "mems", "containers", "limits")

    def __init__(self, group, index, old_cpus, old_mems, cpus, mems, containers=(), limits=None):
        self.group, self.index = group, index
        self.old_cpus, self.old_mems, self.cpus, self.mems = tuple(old_cpus), tuple(old_mems), tuple(cpus), tuple(mems)
        self.containers = list(containers)
        self.limits: dict = dict(limits or {})

    def describe(self) -> str:
        return f"{self.group}/{self.index}: {cpulist.format(self.old_cpus)} -> {cpulist.format(self.cpus)}"

    def __repr__(self) -> str:  # pragma: no cover
        return f"<Move {self.describe()}>"


class NoCpuLeft(TessonError):
    """A change would leave shared groups without any CPU: ``groups`` names them."""

    def __init__(self, groups: list[str], message: str):
        self.groups = groups
        super().__init__(message)


def moves(topo, before: list[Claim], after: list[Claim]) -> list[Move]:
    """The re-pins that take the shared groups of ``after`` from their pins under ``before`` to
    their pins under ``after`` (groups in ``after`` only, e.g. the one being run, are not moved).
    Raises :class:`NoCpuLeft` when a shared group would have no CPU: nothing is to move then."""
    plans: dict = {}
    old, new = effective(topo, before, plans), effective(topo, after, plans)
    starved = [c.name for c in after if not c.exclusive and not c.foreign and c.size and new[c.name] is None]
    if starved:
        raise NoCpuLeft(starved, f"shared group{'s' if len(starved) > 1 else ''} {', '.join(starved)} would be "
                                 f"left without any CPU")
    out = []
    for c in after:
        if c.exclusive or c.foreign or c.name not in old:
            continue
        was, now = old[c.name] or c.shards, new[c.name] or []
        for a, b in zip(was, now):
            if (a.cpus, a.mems) != (b.cpus, b.mems):
                out.append(Move(c.name, a.index, a.cpus, a.mems, b.cpus, b.mems, c.containers.get(a.index, ()),
                                auto_limits(topo, c, b)))
    return out


def auto_limits(topo, c: Claim, shard: Shard) -> dict:
    """The 'auto' limits of ``c``'s shard where ``shard`` puts it ({} when none follow its CPUs)."""
    if not c.limits_auto:
        return {}
    from tesson import quotas  # only then: it imports re

    d = quotas.follow(topo, [shard], c.limits_auto, c.limits)[0]
    return {k: v for k, v in d.items() if k in c.limits_auto}


def holders(topo, claims: list[Claim]) -> dict[int, list[tuple[str, int, str]]]:
    """CPU -> ``[(group, shard index, "exclusive" | "shared"), ...]`` for the pins groups have now."""
    out: dict[int, list[tuple[str, int, str]]] = {}
    eff = effective(topo, claims)
    for c in claims:
        kind = "exclusive" if c.exclusive else "shared"
        for s in eff.get(c.name) or ():
            for cpu in s.cpus:
                out.setdefault(cpu, []).append((c.name, s.index, kind))
    return out


def overlapping_foreign(claims: list[Claim], mask: int) -> list[str]:
    """One warning per foreign group using CPUs of ``mask`` (an exclusive group about to take them)."""
    out = []
    for c in claims:
        if c.foreign and c.cpuset & mask:
            out.append(f"warning: group {c.name} (not in tesson's shared pool: made by an older tesson or for another "
                       f"machine) keeps CPUs {cpulist.format(cpulist.bits(c.cpuset & mask))} that this exclusive group "
                       f"takes; run it again with this tesson to put it in the pool")
    return out


def describe_exclusive(claims: list[Claim], within: int = -1) -> str:
    """``"web holds 0-3, cache holds 4-5"``: the exclusive groups (with CPUs inside ``within``)."""
    parts = [f"{c.name} holds {cpulist.format(cpulist.bits(c.cpuset & within))}"
             for c in claims if c.exclusive and not c.foreign and c.cpuset & within]
    return ", ".join(parts) or "no exclusive group holds any"
