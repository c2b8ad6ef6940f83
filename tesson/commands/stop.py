"""tesson stop: stop every container of a group in parallel; --purge also removes them."""

from __future__ import annotations


def main(args) -> int:
    from tesson import runtime
    from tesson.commands import find_group
    from tesson.errors import TessonError

    client, grp = find_group(args, " (tesson ps lists every group)")
    name = grp.name
    fe = runtime.group_frontend(grp)
    ctx = runtime.group_context(grp, client, purge=args.purge, timeout=args.time)
    errors = runtime.stop(ctx, fe)
    n = len(grp.container_ids())
    if errors:
        raise TessonError(f"group {name}: {len(errors)} of {n} could not be stopped: {'; '.join(errors)}")
    print(f"group {name}: {'removed' if args.purge else 'stopped'} {n} container{'s' if n != 1 else ''}")
    return 0
