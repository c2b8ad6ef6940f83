"""Plan one group next to the groups already on the daemon (pure; stdlib only).

:func:`place` turns a :class:`tesson.request.Placement` made from the command line (topology, unit,
size asked, ``--cpus``/``--near`` mask, ``--exclusive``, quotas) and the daemon's claims
(tesson.holdings) into the placement ``run`` makes now:

- ``--exclusive``: N whole free units, packed or spread (tesson.allocation.pack), and the live
  re-pins this forces on shared groups (tesson.holdings.moves; refused when one would be left
  without a CPU); its memory must fit each NUMA node next to the other exclusive groups'
  (tesson.quotas.check_fit);
- otherwise: ``hwloc-distrib --restrict`` over the shared pool (the allowed CPUs, within the mask,
  that no exclusive group holds); with no exclusive group and no mask, today's whole-machine plan.

``--no-isolated`` is one more mask (tesson.holdings.own_cpus: the allowed CPUs less the kernel's
isolated ones), not a smaller topology: the topology is read whole, since other groups may hold
isolated CPUs. For shared groups the plan is the same (hwloc-distrib --restrict equals hwloc on a
topology restricted to those CPUs); an exclusive unit must then hold no isolated CPU at all.

Each shard's limits (tesson.quotas.limits) travel with the plan. Errors are one line naming the
cause, who holds what, and the fix.
"""

from __future__ import annotations

from tesson import cpulist, holdings
from tesson.allocation import NoFreeUnits, pack
from tesson.errors import TessonError
from tesson.placement import Shard, plan


def plan_group(topo, unit: str, size: int | None, restrict: int | None, exclusive: str, claims) -> list:
    """The shards of a new group given the daemon's ``claims`` (see the module's doc)."""
    held = holdings.exclusive_mask(claims)
    free = topo.cpuset & ~held
    within = f" within CPUs {cpulist.format(cpulist.bits(restrict))}" if restrict is not None else ""
    if exclusive:
        try:
            return pack(topo, unit, size, free, spread=exclusive == "spread", restrict=restrict)
        except NoFreeUnits as e:
            where = holdings.describe_exclusive(claims)
            if e.free == 0:
                what = f"no free {e.unit} unit is left{within} (of {e.total}; {where})"
            else:
                what = (f"{e.asked} {e.unit} units asked for, only {e.free} of {e.total} are free{within} "
                        f"({where})")
            fix = f"ask for fewer (-n {e.free}), " if e.free else ""
            raise TessonError(f"run --exclusive: {what}: {fix}choose another -u or --cpus, or stop an "
                              f"exclusive group (tesson stop -g GROUP --purge)") from None
    r = holdings.shared_restrict(topo, restrict, free)
    if r == 0:
        raise TessonError(f"no CPU is left for a shared group{within}: "
                          f"{holdings.describe_exclusive(claims, restrict if restrict is not None else -1)}: "
                          f"stop an exclusive group (tesson stop -g GROUP --purge) or choose other --cpus")
    return plan(topo, unit, size, restrict=r)


def place(p, claims, config: dict | None = None):
    """The placement ``run`` would make now: ``p`` with its shards, limits and re-pins filled in."""
    from dataclasses import replace

    claims = [c for c in claims if c.name != p.group]
    topo = p.topology
    within = holdings.own_cpus(topo, p.restrict, p.no_isolated)
    shards = plan_group(topo, p.unit, p.size_asked, within, p.exclusive, claims)
    lims: tuple[dict, ...] = ()
    auto: tuple[str, ...] = ()
    if p.quotas:
        from tesson import quotas  # only then: it imports re

        lims = tuple(quotas.limits(topo, shards, p.quotas, config))
        auto = tuple(quotas.auto_keys(p.quotas, config))
    moves: list = []
    warnings: list[str] = []
    if p.exclusive:
        if lims:
            from tesson import quotas

            others = [(c.name, c.shards, c.limits) for c in claims if c.exclusive and not c.foreign]
            quotas.check_fit(topo, p.group, shards, lims, others)
        mine = holdings.Claim(p.group, p.exclusive, p.unit, p.restrict, shards, no_isolated=p.no_isolated)
        warnings = holdings.overlapping_foreign(claims, mine.cpuset)
        try:
            moves = holdings.moves(topo, claims, [*claims, mine])
        except holdings.NoCpuLeft as e:
            raise TessonError(
                f"run --exclusive: taking CPUs {cpulist.format(cpulist.bits(mine.cpuset))} would leave "
                f"shared group{'s' if len(e.groups) > 1 else ''} {', '.join(e.groups)} without any CPU "
                f"(nothing was changed): ask for fewer units (-n), or stop {e.groups[0]} first "
                f"(tesson stop -g {e.groups[0]} --purge)"
            ) from None
    return replace(p, shards=tuple(shards), limits=lims, limits_auto=auto, repins=tuple(moves), warnings=tuple(warnings))


def _no_cpu(name: str, claims, restrict) -> TessonError:
    held = holdings.describe_exclusive(claims, restrict if restrict is not None else -1)
    return TessonError(f"no CPU is left for shared group {name}: {held}: stop an exclusive group "
                       f"(tesson stop -g GROUP --purge)")


def replan(topo, claims, me, size: int | None = None) -> tuple[list, list, list]:
    """Where group ``me`` (its claim, from the group's labels: tesson.holdings.claim_from_labels and
    mark_foreign) should be *now*, next to the other groups' ``claims``: ``(shards, limits,
    moves)`` for ``repair`` and ``update`` (``size`` None: its own size) and ``scale`` (``size``).

    - a shared group in the pool: its plan over the pool as it is now (the plan its shards were
      re-pinned to when exclusive groups came and went; its label plan is the one it started with);
    - an exclusive group: its label plan (it holds those CPUs); ``scale`` keeps the first ``size``
      shards and packs the rest from the free units (its own and other exclusive groups' CPUs
      excluded) after them, so no kept shard moves; ``moves`` are the re-pins the shared groups
      need (making room, or taking back what a smaller group gives back); refused, with nothing
      changed, when one would be left without a CPU or the memory does not fit its NUMA nodes;
    - a foreign group (not in the pool: tesson.holdings): its label plan, or for ``scale`` the plan
      over its own CPUs, as before the pool existed.

    ``limits`` follow the shards (tesson.quotas.follow: the 'auto' ones computed for the CPUs each
    shard has now, the others as they were); [] for a group without limits."""
    others = [c for c in claims if c.name != me.name]
    n = me.size if size is None else size
    own = holdings.own_cpus(topo, me.restrict, me.no_isolated)
    moves: list = []
    if me.foreign or not me.shards:
        shards = list(me.shards) if size is None else plan(topo, me.unit, size, restrict=own)
    elif not me.exclusive:
        got = holdings.shared_plan(topo, me.unit, n, me.restrict, holdings.pool(topo, others), me.no_isolated)
        if got is None:
            raise _no_cpu(me.name, others, own)
        shards = got
    else:
        shards = list(me.shards[:n])
        if n > len(shards):
            free = topo.cpuset & ~holdings.exclusive_mask(others) & ~me.cpuset
            try:
                more = pack(topo, me.unit, n - len(shards), free, spread=me.exclusive == "spread", restrict=own)
            except NoFreeUnits as e:
                raise TessonError(f"exclusive group {me.name}: {e.asked} more {e.unit} unit{'s' if e.asked != 1 else ''} "
                                  f"asked for, {e.free} free ({holdings.describe_exclusive(others)}): scale to at most "
                                  f"{len(shards) + e.free}, or stop an exclusive group") from None
            shards += [Shard(len(shards) + i, s.cpus, s.mems) for i, s in enumerate(more)]
        grown = holdings.Claim(me.name, me.exclusive, me.unit, me.restrict, shards, me.limits,
                               no_isolated=me.no_isolated, limits_auto=me.limits_auto)
        try:
            moves = holdings.moves(topo, [*others, me], [*others, grown])
        except holdings.NoCpuLeft as e:
            raise TessonError(f"exclusive group {me.name}: {n} shards would leave shared group"
                              f"{'s' if len(e.groups) > 1 else ''} {', '.join(e.groups)} without any CPU "
                              f"(nothing was changed): scale to fewer, or stop {e.groups[0]} first") from None
    lims: list = []
    if any(me.limits):
        from tesson import quotas

        lims = quotas.follow(topo, shards, me.limits_auto, me.limits)
        if me.exclusive and not me.foreign and len(shards) > me.size:
            exclusive = [(c.name, c.shards, c.limits) for c in others if c.exclusive and not c.foreign]
            quotas.check_fit(topo, me.name, shards[me.size:], lims[me.size:],
                             [*exclusive, (me.name, me.shards, me.limits)])
    return shards, lims, moves
