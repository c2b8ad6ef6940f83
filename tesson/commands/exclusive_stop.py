"""``stop --purge`` of an exclusive group: remove it, then give its CPUs back to the shared groups
by re-pinning their shards live (tesson.runtime.repin), holding the daemon's lock so no ``run``
plans on those CPUs meanwhile."""

from __future__ import annotations

from typing import Any


def purge_exclusive(client: Any, ctx, fe, grp, where: tuple = ("/", False)) -> int:
    """Remove the group's containers and re-pin the shared groups; returns how many shards moved.
    ``where``: (fsroot, fsroot_given); the topology is the daemon host's (tesson.probe's rule, as
    every command that places shards reads it: tesson.runtime.replan.topology_of)."""
    from tesson import daemon_claims, daemon_lock, holdings, runtime
    from tesson.errors import TessonError
    from tesson.runtime.replan import topology_of

    topo = topology_of(client, where)  # first: a probe that fails must leave the group as it is
    image = grp.image or "busybox"
    with daemon_lock.held(client, image):
        errors = runtime.stop(ctx, fe)
        n = len(grp.container_ids())
        if errors:
            raise TessonError(f"group {grp.name}: {len(errors)} of {n} could not be removed: {'; '.join(errors)} "
                              f"(it still holds its CPUs; run the stop again)")
        after, why = daemon_claims.load(topo, client)
        if after is None:
            raise TessonError(f"group {grp.name} is removed, but the groups on the daemon could not be listed "
                              f"to give its CPUs back ({why}): run any tesson run or stop again later")
        mine = holdings.claim_from_labels(grp.labels)
        if mine is None:
            return 0
        mine.exclusive = mine.exclusive or "packed"
        before = [*after, mine]
        try:
            moves = holdings.moves(topo, before, after)
        except holdings.NoCpuLeft:
            return 0  # cannot happen: the pool only grew
        claimed = {c.name: c for c in after}
        for m in moves:
            m.containers = claimed[m.group].containers.get(m.index, [])
        from tesson.runtime import repin

        return repin.apply(client, moves)
