"""``run``: turn a plan into pinned containers behind the frontend, all or nothing.

Everything ``run`` makes (containers, and whatever the frontend records in ``ctx.undo``) is removed
again if any step fails or the user presses Ctrl-C. Shards are created and started by a bounded
thread pool; shard 0 is created first, alone, because creating it claims the group's name: of two
concurrent runs of one group, exactly one gets the name ``GROUP-0``. Once all are started, ``run``
gives the last one ``SETTLE`` seconds and inspects them all again: a shard that exits at once (a bad
command) fails the run like one that could not start.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from tesson import labels as L
from tesson.container import Container
from tesson.docker_client import explain, is_status, remove_container, unless_gone
from tesson.errors import TessonError
from tesson.runtime.body import create_shard, shard_error, start_shard
from tesson.runtime.pool import MAX_WORKERS, Batch, Interrupted, Progress, interrupts
from tesson.runtime.settle import settle

if TYPE_CHECKING:
    from tesson.frontend import Context, Frontend


CLAIM_WAIT = 5.0  # seconds a lost claim waits for the winner's GROUP-0 to be visible


class GroupInUse(TessonError):
    pass


def new_run_id(ctx: Context) -> str:
    """Label this invocation's containers, so a cleanup can find even one whose create was cut short."""
    ctx.labels[L.RUN] = uuid.uuid4().hex[:16]
    return ctx.labels[L.RUN]


def _claim_conflict(ctx: Context, name: str) -> TessonError:
    """Creating GROUP-0 hit a name conflict: another run of this group, or a stranger's container.

    The name is reserved a moment before the other run's container can be listed or inspected; the
    rollback that follows must see it (it may be on the network this run made: see
    nginx_io._undo_network), so this waits, a few seconds at most, until it can be inspected."""
    labels = {L.GROUP: ctx.group}  # gone again, or unreadable: most likely a run of this group
    deadline = time.monotonic() + CLAIM_WAIT
    delay = 0.02
    while True:
        try:
            labels = Container(ctx.docker.inspect_container(name)).labels
            break
        except Exception as e:
            if not is_status(e, 404) or time.monotonic() > deadline:
                break
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    if labels.get(L.GROUP) != ctx.group:
        return GroupInUse(
            f"a container named {name} exists and is not part of tesson group {ctx.group!r}: "
            f"remove or rename it, or choose another -g"
        )
    return GroupInUse(
        f"group {ctx.group!r} is already in use: a container named {name} exists "
        f"(stop it first: tesson stop -g {ctx.group} --purge)"
    )


def _sweep(client: Any, run_id: str) -> list[str]:
    """Remove every container and network labelled with this run's id (``io.tesson.run``), after the
    undo steps: even one whose create call was cut short does not stay."""
    failed = []
    try:
        left = client.containers(all=True, filters=L.filters(run=run_id))
    except Exception as e:
        return [f"containers of run {run_id} ({explain(e)})"]
    for c in map(Container, left):
        try:
            remove_container(client, c.id)
        except Exception as e:
            failed.append(f"container {c.name} ({explain(e)})")
    try:
        nets = client.networks(filters=L.filters(run=run_id))
    except Exception:
        nets = []
    for n in nets:
        try:
            unless_gone(client.remove_network, n["Id"])
        except Exception as e:
            failed.append(f"network {n.get('Name')} ({explain(e)})")
    return failed


def _summary(whats: Iterable[str]) -> str:
    """``["container web-0", "container web-1", "network tesson-web"]`` -> ``"2 containers, 1 network"``."""
    counts: dict[str, int] = {}
    for what in whats:
        kind = what.rsplit(" ", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in counts.items())


def run(ctx: Context, fe: Frontend, workers: int = MAX_WORKERS) -> None:
    """Create and start every shard of ``ctx.shards`` and the frontend; all or nothing."""
    client = ctx.docker
    run_id = new_run_id(ctx)
    began = time.time()
    progress = Progress(len(ctx.shards), "started")
    created: dict[int, str] = {}
    batch = Batch(workers)
    try:
        with interrupts():
            try:
                fe.before_shards(ctx)
                first = ctx.shards[0]

                def claim(shard: Any, _batch: Batch) -> None:
                    created[shard.index] = create_shard(ctx, fe, shard, ctx.undo)

                # creating GROUP-0 claims the group name (in a worker: Ctrl-C never cuts a create short)
                claim_batch = Batch(1)
                claim_batch.run(claim, [first])
                if claim_batch.errors:
                    exc = claim_batch.errors[0][1]
                    if is_status(exc, 409):
                        raise _claim_conflict(ctx, ctx.shard_name(first.index))
                    raise TessonError(shard_error(ctx, first, exc, "be created"))
                starts: dict[int, float] = {}
                batch.run(lambda s, b: start_shard(ctx, fe, s, b, progress, created, starts, ctx.undo), ctx.shards)
                if batch.errors:
                    shard, exc = min(batch.errors, key=lambda e: e[0].index)
                    doing = "start" if shard.index in created else "be created"
                    raise TessonError(shard_error(ctx, shard, exc, doing))
                progress.close()
                settle(ctx, created, starts, began, workers)  # before the frontend sees any shard
                fe.after_start(ctx, sorted(ctx.started))
                fe.after_shards(ctx)
            finally:
                progress.close()
    except BaseException as e:
        with interrupts(ignore=True):
            failed = ctx.undo.rollback() + _sweep(client, run_id)
        made = _summary(ctx.undo.undone)
        if failed:
            tail = f"; could not remove: {', '.join(failed)}"
        else:
            tail = f"; removed what this run made ({made})" if made else ""
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted{tail}") from None
        if isinstance(e, TessonError):
            e.args = (str(e) + tail,)
            raise
        raise TessonError(f"run failed: {explain(e)}{tail}") from None
