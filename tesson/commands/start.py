"""tesson start: start a stopped group again, each shard in its own container on its own CPUs."""

from __future__ import annotations


def start(group: str, where: tuple | None = None) -> int:
    from tesson import shardio

    client, grp = shardio.open_group(group)
    lines = shardio.start(client, grp, where)
    for line in lines:
        print(line)
    after = shardio.find(client, group)
    if not lines:
        print(f"group {after.name}: already {after.status}, nothing to start")
    else:
        print(f"group {after.name}: {after.status}")
    return 0


def main(args) -> int:
    return start(args.group, (args.fsroot, args.fsroot_given))
