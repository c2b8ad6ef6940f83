"""tesson scale: plan a group again for another number of shards and converge to it, live.

Same unit, same ``--near`` devices as the group was run with; kept shards whose CPUs change are
re-pinned in place (no restart), new ones are created, settled and only then put in the front
door, surplus ones leave the door, are drained and removed (:mod:`tesson.runtime.converge`).
"""

from __future__ import annotations

import argparse
import dataclasses


def scale(group: str, size: int, fsroot: str, fsroot_given: bool, include_isolated: bool,
          drain_timeout: float, timeout: int) -> int:
    from tesson import frontend, probe
    from tesson import group as G
    from tesson.commands import find_group
    from tesson.commands.run import make_plan
    from tesson.errors import TessonError
    from tesson.runtime import change, converge
    from tesson.runtime import plan as P
    from tesson.runtime.repair import report

    client, grp = find_group(group, " (tesson ls lists every group)")
    spec, fe = _spec_and_frontend(grp)
    src = probe.source(fsroot, fsroot_given, client=client, ask=True)  # the daemon host's topology
    placement = make_plan(grp.name, spec.image, src.fsroot, include_isolated, spec.unit, size, tuple(spec.near))
    want = dataclasses.replace(spec, shards=list(placement.shards))
    before = grp.size
    lock = change.acquire(client, grp, "scale", **{"from": before, "to": size})
    try:
        grp = G.find(client, grp.name) or grp
        plan = P.plan(grp, want)
        if plan.work or grp.size != size:
            change.write_record(client, grp, want)
        ctx = frontend.Context.for_group(grp, client, timeout=timeout, spec=want)
        out = converge.execute(ctx, fe, plan, converge.Options(drain_timeout=drain_timeout))
    finally:
        change.release(client, lock)
    lines = report(out, grp.name, "scale")
    for line in lines:
        print(line)
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
