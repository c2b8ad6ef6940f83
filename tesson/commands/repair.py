"""tesson repair: restart or recreate every shard that exited, died or vanished, in place.

"In place" is where the shard should be *now*: a shared group's shards go where the pool puts them
today (tesson.runtime.replan), not where its labels say they started, so a shard the pool re-pinned
off an exclusive group's CPUs is never made again on them."""

from __future__ import annotations

import argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tesson.group import Group
    from tesson.runtime.replan import Where

def repair_group(client: Any, grp: Group, where: Where | None = None) -> list[str]:
    """Repair a group found on the daemon (also what ``start`` does): one line per thing done.
    ``where``: (fsroot, fsroot_given), where the topology is read for a group in the pool."""
    from tesson import frontend, runtime
    from tesson import labels as L
    from tesson.errors import TessonError

    if grp.spec is None:
        raise TessonError(f"group {grp.name!r}: its containers' labels are incomplete, cannot rebuild its plan")
    fe = frontend.for_group(grp)
    if fe is None:
        raise TessonError(f"group {grp.name!r} was run with frontend {grp.labels.get(L.FRONTEND)!r}, not available here")
    from tesson.runtime import change, replan

    stale = change.check_unlocked(grp)  # a scale or update under way: not ours to disturb
    if replan.pooled(grp):
        lines = _repair_pooled(client, grp, fe, where)
    else:
        lines = runtime.repair(frontend.Context.for_group(grp, client), fe)
    if stale and grp.lock is not None:
        change.release_stale(client, grp)
        lines.append(f"removed the lock {grp.lock.name} its holder left ({change.describe_change(grp.change or {})})")
    return lines


def _repair_pooled(client: Any, grp: Group, fe: Any, where: Where | None) -> list[str]:
    """A shared group in the pool: planned where its shards should be now, and, when a shard is to
    be made or moved, planned again and carried out holding the daemon's lock."""
    from tesson import frontend
    from tesson import group as G
    from tesson.runtime import plan as P
    from tesson.runtime import replan
    from tesson.runtime.repair import execute

    topo = replan.topology_of(client, where)

    def now(grp: Group) -> tuple[Any, P.Plan]:
        want, _ = replan.spec_now(client, grp, topo)
        G.read_pins(client, grp)
        ctx = frontend.Context.for_group(grp, client)  # the group's own labels: only where its shards go changes
        ctx.shards, ctx.limits = list(want.shards), list(want.limits)
        return ctx, P.plan(grp, want)

    ctx, plan = now(grp)
    placing = any(s.action in P.PLACING for s in plan.work)
    with replan.daemon_lock(client, grp, needed=placing):
        if placing:
            ctx, plan = now(G.find(client, grp.name) or grp)
        return execute(ctx, fe, plan)


def repair(group: str, where: Where | None = None) -> int:
    from tesson.commands import find_group

    client, grp = find_group(group, ": nothing is left to repair it from (run it again)")
    name = grp.name
    lines = repair_group(client, grp, where)
    for line in lines:
        print(line)
    if not lines:
        print(f"group {name}: all {grp.size} shards running, nothing to repair")
    return 0


def main(args: argparse.Namespace) -> int:
    return repair(args.group, (args.fsroot, args.fsroot_given))
