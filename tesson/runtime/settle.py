"""The settle check of ``run`` and ``repair``: is every shard just started still steadily up a
moment later, and if not, what happened to it (exit code, restarts, OOM, last log line)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from tesson import log
from tesson.container import Container, last_log_lines
from tesson.docker_client import explain, is_status
from tesson.errors import TessonError
from tesson.runtime.pool import Batch

if TYPE_CHECKING:
    from tesson.frontend import Context

SETTLE = 0.5  # seconds the last-started shard is given to fall over before run trusts the group


class Down(NamedTuple):
    """A shard the settle check found down: ``kind`` is ``exited`` (not running, restarting or
    restarted by Docker), ``vanished`` (a 404) or ``unreadable`` (another inspect error, ``detail``)."""

    kind: str
    detail: str = ""


def settle_check(ctx: Context, created: dict[int, str], starts: dict[int, float], workers: int) -> dict[int, Down]:
    """Wait until the last-started shard has had ``SETTLE`` seconds, inspect every shard of
    ``created`` (index -> container id) in parallel into ``ctx.started``, and return each one that
    is not steadily up, by index. Used by ``run`` (which fails) and ``repair`` (which reports)."""
    client = ctx.docker
    delay = max(starts.values()) + SETTLE - time.monotonic() if starts else 0
    if delay > 0:
        time.sleep(delay)
    down: dict[int, Down] = {}
    lock = threading.Lock()

    def look(index: int, _batch: Batch) -> None:
        try:
            info = client.inspect_container(created[index])
        except Exception as e:
            # a 404: removed behind our back (docker rm, --rm in the config); else the daemon's trouble
            with lock:
                down[index] = Down("vanished" if is_status(e, 404) else "unreadable", explain(e))
            return
        ctx.started[index] = info
        if not Container(info).steadily_running:
            with lock:
                down[index] = Down("exited")

    Batch(workers, stop_on_error=False).run(look, sorted(created))
    for i in sorted(down):
        log.info("shard fell over after start", shard=ctx.shard_name(i), how=down[i].kind)
    return dict(sorted(down.items()))


def _exit_of(client: Any, info: dict, since: float) -> tuple[int | None, float | None]:
    """(exit code, when) of a shard that fell over. Its state says, unless Docker has restarted it
    already (which resets the state's code): then its latest ``die`` event since the run began does,
    and ``when`` (epoch seconds) lets its log be cut there, before the next attempt's output."""
    state = info.get("State") or {}
    if not Container(info).running:
        return state.get("ExitCode"), None
    try:
        events = list(client.events(since=int(since) - 1, until=time.time(),
                                    filters={"container": info["Id"], "event": "die"}, decode=True))
    except Exception:
        return None, None
    for e in reversed(events):
        code = ((e.get("Actor") or {}).get("Attributes") or {}).get("exitCode")
        if code is not None:
            when = e.get("timeNano")
            return int(code), (when / 1e9 + 0.01 if when else None)
    return None, None


def _last_log_line(client: Any, cid: str, until: float | None = None) -> str:
    """The last line a container wrote (before ``until``), worded for an error message."""
    try:
        lines = last_log_lines(client, cid, count=1, tail=20, until=until)
    except Exception as e:
        return f"its log cannot be read ({explain(e)})"
    return f"last log line: {lines[-1][:200]}" if lines else "it logged nothing"


def down_reason(ctx: Context, created: dict[int, str], index: int, down: Down, since: float) -> str:
    """What happened to a shard :func:`settle_check` found down, to follow its name in a message:
    for one that exited, its exit code (and restarts, OOM) and the last line it logged."""
    if down.kind == "vanished":
        return f"vanished right after it started ({down.detail})"
    if down.kind == "unreadable":
        return f"could not be inspected after it started: {down.detail}"
    client = ctx.docker
    info = ctx.started[index]
    state = info.get("State") or {}
    code, until = _exit_of(client, info, since)
    how = f"exit code {code}" if code is not None else "exit code unknown"
    if state.get("OOMKilled"):
        how += ", killed for lack of memory"
    restarts = info.get("RestartCount") or 0
    if restarts:
        how += f", restarted {restarts} time{'s' if restarts != 1 else ''} by Docker"
    return f"exited right after it started ({how}); {_last_log_line(client, created[index], until)}"


def settle(ctx: Context, created: dict[int, str], starts: dict[int, float], since: float, workers: int) -> None:
    """``run``'s settle: fail the run when any shard is not steadily up a moment after it started
    (a command that exits at once), naming the first (one the daemon could not inspect first)."""
    down = settle_check(ctx, created, starts, workers)
    if not down:
        return
    first = min(down, key=lambda i: (down[i].kind != "unreadable", i))
    msg = f"shard {ctx.shard_name(first)} {down_reason(ctx, created, first, down[first], since)}"
    unreadable = down[first].kind == "unreadable"  # the daemon's trouble, not the shards'
    others = [i for i in down if i != first and (down[i].kind == "unreadable") == unreadable]
    if others:
        msg += f"; so did {', '.join(ctx.shard_name(i) for i in others)}"
    raise TessonError(msg)
