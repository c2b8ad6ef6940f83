"""tesson top: the processes running in every shard of a group."""

from __future__ import annotations

import sys


def top(group: str, out=None) -> int:
    from tesson import shardio

    out = out or sys.stdout
    client, grp = shardio.open_group(group)
    blocks = []
    for t, titles, rows in shardio.top(client, shardio.targets(grp)):
        if not titles:
            blocks.append(f"{t.name}\n(not running)\n")
            continue
        table = [titles] + rows
        widths = [max(len(str(r[i])) if i < len(r) else 0 for r in table) for i in range(len(titles))]
        lines = ["   ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
        blocks.append(t.name + "\n" + "\n".join(lines) + "\n")
    out.write("\n".join(blocks))
    return 0


def main(args) -> int:
    return top(args.group)
