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

Each shard's limits (tesson.quotas.limits) travel with the plan. Errors are one line naming the
cause, who holds what, and the fix.
"""

from __future__ import annotations

from tesson import cpulist, holdings
from tesson.allocation import NoFreeUnits, pack
from tesson.errors import TessonError
from tesson.placement import plan


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
    claims = [c for c in claims if c.name != p.group]
    topo = p.topology
    shards = plan_group(topo, p.unit, p.size_asked, p.restrict, p.exclusive, claims)
    lims: tuple[dict, ...] = ()
    if p.quotas:
        from tesson import quotas  # only then: it imports re

        lims = tuple(quotas.limits(topo, shards, p.quotas, config))
    moves: list = []
    warnings: list[str] = []
    if p.exclusive:
        if lims:
            from tesson import quotas

            others = [(c.name, c.shards, c.limits) for c in claims if c.exclusive and not c.foreign]
            quotas.check_fit(topo, p.group, shards, lims, others)
        mine = holdings.Claim(p.group, p.exclusive, p.unit, p.restrict, shards)
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
    return p._replace(shards=tuple(shards), limits=lims, repins=tuple(moves), warnings=tuple(warnings))
