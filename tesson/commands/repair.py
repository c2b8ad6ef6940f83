"""tesson repair: restart or recreate every shard that exited, died or vanished, in place."""

from __future__ import annotations

import argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tesson.group import Group


def repair_group(client: Any, grp: Group) -> list[str]:
    """Repair a group found on the daemon (also what ``start`` does): one line per thing done."""
    from tesson import frontend, runtime
    from tesson import labels as L
    from tesson.errors import TessonError

    if grp.spec is None:
        raise TessonError(f"group {grp.name!r}: its containers' labels are incomplete, cannot rebuild its plan")
    fe = frontend.for_group(grp)
    if fe is None:
        raise TessonError(f"group {grp.name!r} was run with frontend {grp.labels.get(L.FRONTEND)!r}, not available here")
    from tesson.runtime import change

    stale = change.check_unlocked(grp)  # a scale or update under way: not ours to disturb
    lines = runtime.repair(frontend.Context.for_group(grp, client), fe)
    if stale and grp.lock is not None:
        change.release_stale(client, grp)
        lines.append(f"removed the lock {grp.lock.name} its holder left ({change.describe_change(grp.change or {})})")
    return lines


def repair(group: str) -> int:
    from tesson.commands import find_group

    client, grp = find_group(group, ": nothing is left to repair it from (run it again)")
    name = grp.name
    lines = repair_group(client, grp)
    for line in lines:
        print(line)
    if not lines:
        print(f"group {name}: all {grp.size} shards running, nothing to repair")
    return 0


def main(args: argparse.Namespace) -> int:
    return repair(args.group)
