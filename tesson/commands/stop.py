"""tesson stop: stop every container of a group in parallel; --purge also removes them."""

from __future__ import annotations

import argparse


def stop(group: str, purge: bool = False, timeout: int = 10) -> int:
    from tesson import frontend, runtime
    from tesson.commands import find_group
    from tesson.errors import TessonError

    client, grp = find_group(group, " (tesson ps lists every group)")
    name = grp.name
    fe = frontend.for_group(grp)
    ctx = frontend.Context.for_group(grp, client, purge=purge, timeout=timeout)
    errors = runtime.stop(ctx, fe)
    n = len(grp.container_ids())
    if errors:
        raise TessonError(f"group {name}: {len(errors)} of {n} could not be stopped: {'; '.join(errors)}")
    print(f"group {name}: {'removed' if purge else 'stopped'} {n} container{'s' if n != 1 else ''}")
    return 0


def main(args: argparse.Namespace) -> int:
    return stop(args.group, purge=args.purge, timeout=args.time)
