"""The everyday verbs' Docker work on a group that exists: find it, pick its shards, merge their
logs, list their processes, start and restart it.

This is the one module of the everyday verbs (``logs``, ``exec``, ``stats``, ``top``, ``start``,
``restart``, ``ls``) that knows how a group is found on the daemon (``tesson.group``) and how the
runtime brings one back (``tesson.runtime``); the verbs themselves take plain values.

Merged logs, the algorithm: Docker keeps each container's log in time order and stamps every line
(RFC 3339, nanoseconds, UTC). Without ``--follow`` each shard's log is read in parallel with its
time stamps, and the shards' logs are merged by time stamp (a k-way merge of already sorted lists,
so the order is the order in which the lines were written, whichever shard wrote them); the
stamps are dropped again unless ``--timestamps`` asks for them. With ``--follow`` every shard is
streamed by its own thread and lines are printed as they arrive. Hazards: Docker trims trailing
zeros from the fraction in some versions (``.1Z`` sorts after ``.12Z`` as text), so stamps are
compared as numbers; a shard's stream may cut a line in two, so lines are put back together
before they are printed; a line without a stamp (a daemon that lost it) sorts first.
"""

from __future__ import annotations

import heapq
import sys
import threading

from tesson import group as G
from tesson.errors import TessonError, UsageError
from tesson.group import ShardState

MAX_WORKERS = 16


def open_group(name: str, workers: int = MAX_WORKERS):
    """Check the name (UsageError, exit 2, before any daemon call), connect, and find the group:
    ``(client, group)``."""
    from tesson import docker_client, names

    names.validate_group(name)
    client = docker_client.connect(workers=workers)
    return client, find(client, name)


def find(client, name: str):
    """The group ``name`` rebuilt from the daemon's labels; TessonError (exit 1) when there is none."""
    grp = G.find(client, name)
    if grp is None:
        raise TessonError(f"no group named {name!r} (tesson ls lists every group)")
    return grp


def list_groups(client) -> list:
    return G.list_groups(client)


def targets(grp) -> list[ShardState]:
    """The group's shard containers that exist, by index (a vanished shard has none)."""
    return [s for s in grp.shards if s.id]


def pick(grp, index: int) -> ShardState:
    """Shard ``index`` of the group: UsageError (exit 2) when the plan has no such shard,
    TessonError (exit 1) when it has one but its container is gone or not running."""
    if not 0 <= index < grp.size:
        raise UsageError(f"group {grp.name} has shards 0-{grp.size - 1}, not {index}")
    st = grp.shards[index]
    if not st.id:
        raise TessonError(f"shard {st.name} has no container (tesson repair {grp.name} recreates it)")
    if not st.up:
        raise TessonError(f"shard {st.name} is not running ({st.state}; tesson start {grp.name})")
    return st


def parallel(fn, items, workers: int = MAX_WORKERS) -> list:
    """``[fn(item) for item in items]`` on a thread pool, in order; the first error is raised."""
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


# --- logs -------------------------------------------------------------------------------------


def _stamp_key(stamp: bytes) -> tuple:
    """``2024-05-01T10:00:00.12Z`` -> (b"2024-05-01T10:00:00", 120000000): comparable as numbers."""
    head, _, frac = stamp.rstrip(b"Z").partition(b".")
    digits = frac[:9]
    return head, int(digits.ljust(9, b"0")) if digits.isdigit() else 0


def _split(line: bytes) -> tuple:
    """A stamped log line into (sort key, stamp, message)."""
    stamp, sep, msg = line.partition(b" ")
    if not sep or not stamp[:1].isdigit():
        return (b"", 0), b"", line
    return _stamp_key(stamp), stamp, msg


class LogPrinter:
    """Writes ``NAME | [STAMP ]MESSAGE`` lines to a binary stream, names padded to one width."""

    def __init__(self, names: list[str], timestamps: bool, prefix: bool = True, out=None) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.timestamps, self.prefix = timestamps, prefix
        self.out = out or sys.stdout.buffer
        self.lock = threading.Lock()

    def line(self, name: str, stamp: bytes, msg: bytes) -> None:
        head = f"{name.ljust(self.width)} | ".encode() if self.prefix else b""
        if self.timestamps and stamp:
            head += stamp + b" "
        with self.lock:
            self.out.write(head + msg + b"\n")

    def flush(self) -> None:
        with self.lock:
            self.out.flush()


def _read_log(client, t: ShardState, tail, since, until) -> list[tuple]:
    raw = client.logs(t.id, stream=False, timestamps=True, tail=tail, since=since, until=until)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [_split(line) for line in lines]


def print_logs(client, shards: list[ShardState], printer: LogPrinter, tail: int | str = "all", since=None, until=None) -> None:
    """Every shard's log up to now, merged by time (see the module's docstring)."""
    per_shard = parallel(lambda t: _read_log(client, t, tail, since, until), shards)
    streams = [[(key, i, stamp, msg) for key, stamp, msg in lines] for i, lines in enumerate(per_shard)]
    for _key, i, stamp, msg in heapq.merge(*streams):
        printer.line(shards[i].name, stamp, msg)
    printer.flush()


def follow_logs(client, shards: list[ShardState], printer: LogPrinter, tail: int | str = "all", since=None) -> None:
    """Stream every shard's log until every stream ends (its container stopped) or Ctrl-C."""
    import queue

    lines: queue.Queue = queue.Queue(maxsize=10000)
    errors: list[str] = []

    def pump(t: ShardState) -> None:
        buf = b""
        try:
            for chunk in client.logs(t.id, stream=True, follow=True, timestamps=True, tail=tail, since=since):
                buf += chunk
                *whole, buf = buf.split(b"\n")
                for line in whole:
                    lines.put((t.name, line))
            if buf:
                lines.put((t.name, buf))
        except Exception as e:  # a container removed under us: its stream ends, the others go on
            from tesson.docker_client import explain

            errors.append(f"{t.name}: {explain(e)}")
        finally:
            lines.put((t.name, None))

    for t in shards:
        threading.Thread(target=pump, args=(t,), daemon=True, name=f"logs-{t.name}").start()
    open_streams = len(shards)
    while open_streams:
        try:
            name, line = lines.get(timeout=0.5)
        except queue.Empty:
            printer.flush()
            continue
        if line is None:
            open_streams -= 1
            continue
        _key, stamp, msg = _split(line)
        printer.line(name, stamp, msg)
        if lines.empty():
            printer.flush()
    printer.flush()
    if errors:
        raise TessonError("log stream lost: " + "; ".join(errors))


# --- top --------------------------------------------------------------------------------------


def top(client, shards: list[ShardState], ps_args: str | None = None) -> list[tuple]:
    """``(target, titles, rows)`` for every running shard, in parallel; ([], []) when not running."""

    def one(t: ShardState):
        if not t.up:
            return t, [], []
        from tesson.docker_client import explain, is_status

        try:
            doc = client.top(t.id, ps_args=ps_args) if ps_args else client.top(t.id)
        except Exception as e:
            if is_status(e, 404, 409):  # stopped or removed since the listing
                return t, [], []
            raise TessonError(f"cannot list the processes of {t.name}: {explain(e)}") from None
        return t, list(doc.get("Titles") or []), [list(p) for p in doc.get("Processes") or []]

    return parallel(one, shards)


# --- start, restart ---------------------------------------------------------------------------


def start(client, grp, where: tuple | None = None) -> list[str]:
    """Bring every shard of the group and its frontend up: stopped shards are started again in
    their containers, vanished or dead ones recreated on their planned CPUs (what ``repair``
    does; ``where``: (fsroot, fsroot_given) for a group in the shared pool). Returns what was
    done, one line each ([] when everything was already up)."""
    from tesson.commands.repair import repair_group

    return repair_group(client, grp, where)


def restart(client, grp, timeout: int, where: tuple | None = None) -> list[str]:
    """Stop every container of the group (``timeout`` seconds' grace), then :func:`start` it."""
    from tesson import frontend, runtime

    errors = runtime.stop(frontend.Context.for_group(grp, client, timeout=timeout), frontend.for_group(grp))
    if errors:
        raise TessonError(f"group {grp.name}: could not stop {'; '.join(errors)}")
    return start(client, G.find(client, grp.name) or grp, where)
