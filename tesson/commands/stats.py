"""tesson stats: CPU, memory and network use of every shard, and how busy each pinned CPU is.

The per-CPU figure is the shard's own: its cgroup's per-CPU time (see tesson.shardstats)."""

from __future__ import annotations

import json
import sys
import time


def stats(group: str, *, stream: bool, fmt: str, out=None) -> int:
    from tesson import shardio, shardstats

    out = out or sys.stdout
    client, grp = shardio.open_group(group)
    shards = shardio.targets(grp)

    def show(rows) -> None:
        if fmt == "json":
            out.write("".join(json.dumps(u.to_json(), separators=(",", ":")) + "\n" for u in rows))
        else:
            out.write(shardstats.table(rows))
        out.flush()

    if not stream:
        show(shardstats.sample(client, shards))
        return 0
    streams = shardstats.Streams(client, shards)
    clear = out.isatty() and fmt != "json"
    try:
        time.sleep(1.2)  # the first sample of a stream has no previous one to compare with
        while True:
            if clear:
                out.write("\033[2J\033[H")
            show(streams.latest())
            time.sleep(1.0)
    except KeyboardInterrupt:  # the way out of a stream: not a failure
        return 0


def main(args) -> int:
    return stats(args.group, stream=not args.no_stream, fmt=args.format)
