"""tesson scale: plan a group again for another number of shards and converge to it, live.

Same unit, same ``--cpus``/``--near`` CPUs and ``--no-isolated`` as the group was run with, next to
the groups on the daemon (tesson.sharing.replan): a shared group is planned over the pool as it is
now, an exclusive one keeps its shards and takes more free units (the shared groups making room,
live) or gives the surplus back. Kept shards whose CPUs change are re-pinned in place (no restart),
new ones are created, settled and only then put in the front door, surplus ones leave the door, are
drained and removed (:mod:`tesson.runtime.converge`). A group in the pool, or an exclusive one, is
scaled holding the daemon's lock (no ``run`` plans on the CPUs meanwhile).

A front door that cannot keep the new shards out until they are healthy (a kernel door whose agent
is down) refuses the scale before anything changes: no re-pin, no spec record, no shard. A scale
down whose surplus shards could not all be removed re-pins no shared group onto CPUs (those shards
may still run there): the same scale again does it once they are gone.
"""

from __future__ import annotations

import argparse


def scale(group: str, size: int, fsroot: str, fsroot_given: bool, include_isolated: bool,
          drain_timeout: float, timeout: int) -> int:
    from tesson import cpulist, frontend, holdings, placement
    from tesson import group as G
    from tesson.commands import find_group
    from tesson.cpulist import weight
    from tesson.errors import TessonError
    from tesson.frontend import Undo
    from tesson.runtime import change, converge, repin, replan
    from tesson.runtime import plan as P
    from tesson.runtime.repair import report

    client, grp = find_group(group, " (tesson ls lists every group)")
    spec, fe = _spec_and_frontend(grp)
    topo = replan.topology_of(client, (fsroot, fsroot_given))  # the daemon host's
    own = holdings.own_cpus(topo, cpulist.list_to_mask(spec.restrict) if spec.restrict else None,
                            spec.no_isolated or not include_isolated)
    placement.check_size(size, weight(topo.cpuset if own is None else own))
    before = grp.size
    with replan.daemon_lock(client, grp, needed=bool(spec.machine)):
        lock = change.acquire(client, grp, "scale", **{"from": before, "to": size})
        try:
            grp = G.find(client, grp.name) or grp
            want, moves = replan.spec_now(client, grp, topo, size, no_isolated=not include_isolated)
            G.read_pins(client, grp)
            plan = P.plan(grp, want)
            grows = size > before
            ctx = frontend.Context.for_group(grp, client, timeout=timeout, spec=want)
            converge.hold(ctx, fe, plan)  # a door that cannot keep new shards out: refused, nothing changed
            undo = Undo()
            try:
                if moves and grows:  # an exclusive group takes more CPUs: the shared groups leave them first
                    repin.apply(client, moves, undo)  # (a refusal puts back the re-pins it did, itself)
                try:
                    if plan.work or grp.size != size or moves:
                        change.write_record(client, grp, want)
                except BaseException:
                    undo.rollback()
                    raise
            except BaseException:
                converge.let_go(ctx, fe, plan)  # and the door holds out no shard that will not come
                raise
            out = converge.execute(ctx, fe, plan, converge.Options(drain_timeout=drain_timeout))
            deferred = moves if moves and not grows and out.unremoved else []
            if deferred:  # surplus shards still run on the CPUs the moves would give: move nothing yet
                moves = []
            elif moves and not grows:  # the shared groups get back what a smaller one gave back
                repin.apply(client, moves)
        finally:
            change.release(client, lock)
    try:
        lines = report(out, grp.name, "scale")
    except TessonError as e:
        if not deferred:
            raise
        raise TessonError(f"{e}; the shared groups were not re-pinned onto the CPUs those shards still use "
                          f"({', '.join(m.describe() for m in deferred)}): the same scale again does it once they "
                          f"are gone") from None
    for line in lines:
        print(line)
    if moves:
        print(f"{len(moves)} shard{'s' if len(moves) != 1 else ''} of shared groups re-pinned live: "
              + ", ".join(m.describe() for m in moves))
    after = G.find(client, grp.name)
    if after is None:
        raise TessonError(f"group {grp.name!r} vanished during the scale")
    print(f"group {after.name}: {before} -> {after.size} shards, {after.status}")
    return 0


def _spec_and_frontend(grp):
    from tesson import frontend
    from tesson import labels as L
    from tesson.errors import TessonError

    if grp.spec is None:
        raise TessonError(f"group {grp.name!r}: its containers' labels are incomplete, cannot rebuild its plan")
    fe = frontend.for_group(grp)
    if fe is None:
        raise TessonError(f"group {grp.name!r} was run with frontend {grp.labels.get(L.FRONTEND)!r}, not available here")
    return grp.spec, fe


def main(args: argparse.Namespace) -> int:
    return scale(args.group, args.size, args.fsroot, args.fsroot_given, not args.no_isolated,
                 args.drain_timeout, args.time)
