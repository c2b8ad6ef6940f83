"""tesson stop: stop every container of a group in parallel; --purge also removes them."""

from __future__ import annotations

import argparse


def stop(group: str, purge: bool = False, timeout: int = 10, fsroot: str = "/") -> int:
    from tesson import frontend, runtime
    from tesson.commands import find_group
    from tesson.errors import TessonError

    client, grp = find_group(group, " (tesson ps lists every group)")
    name = grp.name
    fe = frontend.for_group(grp)
    ctx = frontend.Context.for_group(grp, client, purge=purge, timeout=timeout)
    n = len(grp.container_ids())
    if purge and grp.exclusive and grp.spec is not None:
        from tesson.commands.exclusive_stop import purge_exclusive

        moved = purge_exclusive(client, ctx, fe, grp, fsroot)
        note = f"; {moved} shared shard{'s' if moved != 1 else ''} re-pinned onto the CPUs it gave back" if moved else ""
        print(f"group {name}: removed {n} container{'s' if n != 1 else ''}{note}")
        return 0
    errors = runtime.stop(ctx, fe)
    if errors:
        raise TessonError(f"group {name}: {len(errors)} of {n} could not be stopped: {'; '.join(errors)}")
    print(f"group {name}: {'removed' if purge else 'stopped'} {n} container{'s' if n != 1 else ''}")
    return 0


def main(args: argparse.Namespace) -> int:
    return stop(args.group, purge=args.purge, timeout=args.time, fsroot=getattr(args, "fsroot", "/") or "/")
