"""tesson logs: every shard's log merged into one, each line prefixed with the shard's name."""

from __future__ import annotations

import re

from tesson.errors import UsageError

_DURATION = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"  # compiled on first use: only --since/--until need it
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(text: str, option: str, now: float | None = None) -> float:
    """A point in time as ``docker logs --since/--until`` take it, as Unix seconds: a duration
    back from now (``42m``, ``1h30m``, ``1.5h``, Go's syntax), an RFC 3339 time or date
    (``2024-05-01T10:00:00Z``; without a zone, local time), or Unix seconds (``1714557600.5``).
    UsageError (exit 2) for anything else."""
    import time

    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if re.fullmatch(f"(?:{_DURATION})+", text):
        back = sum(float(n) * _UNIT_SECONDS[u] for n, u in re.findall(_DURATION, text))
        return (time.time() if now is None else now) - back
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: give a duration (10m, 1h30m), an RFC 3339 time (2024-05-01T10:00:00Z) "
            f"or Unix seconds"
        ) from None
    return when.timestamp()


def logs(group: str, *, follow: bool, tail: int | str, since: str | None, until: str | None, timestamps: bool,
         prefix: bool) -> int:
    from tesson import shardio
    from tesson.errors import TessonError

    since_at = parse_time(since, "--since") if since else None
    until_at = parse_time(until, "--until") if until else None
    client, grp = shardio.open_group(group, read_only=not follow)
    shards = shardio.targets(grp)
    if not shards:
        raise TessonError(f"group {grp.name}: none of its shards has a container (tesson repair {grp.name})")
    printer = shardio.LogPrinter([t.name for t in shards], timestamps=timestamps, prefix=prefix)
    if follow:
        try:
            shardio.follow_logs(client, shards, printer, tail=tail, since=since_at)
        except KeyboardInterrupt:  # the way out of --follow: not a failure
            printer.flush()
        return 0
    shardio.print_logs(client, shards, printer, tail=tail, since=since_at, until=until_at)
    return 0


def main(args) -> int:
    return logs(args.group, follow=args.follow, tail=args.tail, since=args.since, until=args.until,
                timestamps=args.timestamps, prefix=not args.no_log_prefix)
