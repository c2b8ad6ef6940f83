"""tesson restart: stop every container of a group, then start it again."""

from __future__ import annotations


def restart(group: str, timeout: int, where: tuple | None = None) -> int:
    from tesson import shardio

    client, grp = shardio.open_group(group)
    for line in shardio.restart(client, grp, timeout, where):
        print(line)
    after = shardio.find(client, group)
    print(f"group {after.name}: restarted, {after.status}")
    return 0


def main(args) -> int:
    return restart(args.group, args.time, (args.fsroot, args.fsroot_given))
