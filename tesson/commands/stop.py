"""tesson stop: stop every container of a group in parallel; --purge also removes them, and every
other object labelled with the group (networks), and with --gorb the group's Gorb services, even
when no container of the group is left."""

from __future__ import annotations

import argparse


def stop(group: str, purge: bool = False, timeout: int = 10, where: tuple = ("/", False),
         gorb: str | None = None) -> int:
    """``where``: (fsroot, fsroot_given), where an exclusive group's purge reads the topology
    (tesson.probe's rule: the daemon's host)."""
    from tesson import docker_client, frontend, names, runtime
    from tesson import group as G
    from tesson.cli import program_name
    from tesson.errors import TessonError

    name = names.validate_group(group)
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    grp = G.find(client, name)
    if grp is None:
        left = runtime.purge_leftovers(client, name, gorb) if purge else []
        if not left:
            raise TessonError(f"no group named {name!r} ({program_name()} ps lists every group)")
        print(f"group {name}: no container was left; removed {', '.join(left)}")
        return 0
    fe = frontend.for_group(grp)
    ctx = frontend.Context.for_group(grp, client, purge=purge, timeout=timeout)
    n = len(grp.container_ids())
    if purge and grp.exclusive and grp.spec is not None:
        from tesson.commands.exclusive_stop import purge_exclusive

        moved = purge_exclusive(client, ctx, fe, grp, where)
        note = f"; {moved} shared shard{'s' if moved != 1 else ''} re-pinned onto the CPUs it gave back" if moved else ""
        print(f"group {name}: removed {n} container{'s' if n != 1 else ''}{note}")
        return 0
    errors = runtime.stop(ctx, fe)
    if errors:
        raise TessonError(f"group {name}: {len(errors)} of {n} could not be stopped: {'; '.join(errors)}")
    print(f"group {name}: {'removed' if purge else 'stopped'} {n} container{'s' if n != 1 else ''}")
    return 0


def main(args: argparse.Namespace) -> int:
    return stop(args.group, purge=args.purge, timeout=args.time, where=(args.fsroot, args.fsroot_given),
                gorb=args.gorb or None)
