"""tesson repair: restart or recreate every shard that exited, died or vanished, in place."""

from __future__ import annotations


def main(args) -> int:
    from tesson import group as G
    from tesson import runtime
    from tesson.commands import find_group
    from tesson.errors import TessonError

    client, grp = find_group(args, ": nothing is left to repair it from (run it again)")
    name = grp.name
    if grp.spec is None:
        raise TessonError(f"group {name!r}: its containers' labels are incomplete, cannot rebuild its plan")
    fe = runtime.group_frontend(grp)
    if fe is None:
        raise TessonError(f"group {name!r} was run with frontend {grp.labels.get(G.FRONTEND)!r}, not available here")
    ctx = runtime.group_context(grp, client)
    lines = runtime.repair(ctx, fe)
    for line in lines:
        print(line)
    if not lines:
        print(f"group {name}: all {grp.size} shards running, nothing to repair")
    return 0
