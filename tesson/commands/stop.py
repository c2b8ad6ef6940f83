"""tesson stop: stop every container of a group in parallel; --purge also removes them, and every
other object labelled with the group (networks), and with --gorb the group's Gorb services, even
when no container of the group is left."""

from __future__ import annotations

import argparse


def stop(group: str, purge: bool = False, timeout: int = 10, gorb: str | None = None) -> int:
    from tesson import docker_client, frontend, names, runtime
    from tesson import group as G
    from tesson.errors import TessonError

    name = names.validate_group(group)
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    grp = G.find(client, name)
    if grp is None:
        left = runtime.purge_leftovers(client, name, gorb) if purge else []
        if not left:
            raise TessonError(f"no group named {name!r} (tesson ps lists every group)")
        print(f"group {name}: no container was left; removed {', '.join(left)}")
        return 0
    fe = frontend.for_group(grp)
    ctx = frontend.Context.for_group(grp, client, purge=purge, timeout=timeout)
    errors = runtime.stop(ctx, fe)
    n = len(grp.container_ids())
    if errors:
        raise TessonError(f"group {name}: {len(errors)} of {n} could not be stopped: {'; '.join(errors)}")
    print(f"group {name}: {'removed' if purge else 'stopped'} {n} container{'s' if n != 1 else ''}")
    return 0


def main(args: argparse.Namespace) -> int:
    return stop(args.group, purge=args.purge, timeout=args.time, gorb=args.gorb or None)
