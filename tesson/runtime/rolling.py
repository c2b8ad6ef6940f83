"""The rolling replacement of :mod:`tesson.runtime.converge` (``update``'s ``replace`` steps).

``parallel`` shards at a time: out of the door (``fe.remove_backends``), drained, stopped and
renamed ``GROUP-i.prev`` (kept; ``fe.forget_backends``), the successor created on the same index,
CPUs and memory nodes, started, healthy (:func:`health`: its Docker healthcheck when the image has
one, else the settle check), set up by ``fe.after_start`` and put in the door (``fe.add_backends``),
and only then the previous container removed. A successor that does not become healthy is removed,
the previous container renamed back, started and put back in the door (:func:`put_back`), and the
rolling stops there; so it does when the door says it will not take a healthy successor in
(:class:`tesson.frontend.NotAdmitted`: the kernel door admits a shard only once it listens, within
a bound) or fails while a successor has stopped since its settle check, and when it refuses to take
a chunk out (nothing is touched then).

The functions work on the executor's run (``converge._Run``: its context, frontend, outcome, pool
and door hooks); a process that dies halfway leaves a ``.prev`` container, which the next plan
finishes or restores.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tesson import cpulist, log, names
from tesson.container import Container
from tesson.docker_client import explain, remove_container, unless_gone
from tesson.frontend import NotAdmitted
from tesson.runtime import plan as P
from tesson.runtime.body import start_shard
from tesson.runtime.drain import drain
from tesson.runtime.pool import Batch, NoProgress
from tesson.runtime.settle import down_reason, settle_check

if TYPE_CHECKING:
    from tesson.runtime.converge import _Run

HEALTH_TIMEOUT = 60.0  # seconds a successor with a Docker healthcheck gets to become healthy


def replace(run: _Run, steps: list[P.Step]) -> None:
    """Replace ``steps`` ``run.opts.parallel`` at a time; stop at the first chunk that fails."""
    k = max(1, run.opts.parallel)
    for n in range(0, len(steps), k):
        if not replace_some(run, steps[n:n + k]):
            return


def replace_some(run: _Run, chunk: list[P.Step]) -> bool:
    """One rolling step for ``chunk``; False when a successor failed (the rolling stops)."""
    ctx, client = run.ctx, run.client
    idx = [s.index for s in chunk]
    ctx.draining |= set(idx)
    if not run.door("remove_backends", idx):
        ctx.draining -= set(idx)
        run.door("add_backends", idx)
        run.out.stopped_at = chunk[0].name
        return False

    def drain_one(step: P.Step, _batch: Batch) -> None:
        drain(client, step.container_id, run.opts.drain_timeout, run.lag())

    run.pool(drain_one, chunk)
    aside: dict[int, str] = {}  # index -> previous container id, stopped and renamed

    def set_aside(step: P.Step, _batch: Batch) -> None:
        unless_gone(client.stop, step.container_id, timeout=ctx.timeout)
        client.rename(step.container_id, names.previous_name(ctx.group, step.index))
        with run.lock:
            aside[step.index] = step.container_id

    batch = run.pool(set_aside, chunk)
    run.door("forget_backends", sorted(aside))
    created: dict[int, str] = {}
    starts: dict[int, float] = {}
    from tesson.frontend import Undo

    undo = Undo()
    made = run.pool(lambda s, b: start_shard(ctx, run.fe, s.shard, b, NoProgress(), created, starts, undo),
                    [s for s in chunk if s.index in aside])
    bad: dict[int, str] = {s.index: f"could not be stopped and set aside: {explain(e)}" for s, e in batch.errors}
    bad.update({s.index: f"its successor could not be started: {explain(e)}" for s, e in made.errors})
    started = {i: cid for i, cid in created.items() if i in starts}
    bad.update({i: f"its successor {why}" for i, why in health(run, started, starts).items()})
    good = [i for i in idx if i not in bad]
    for step, _exc in batch.errors:  # stopped but not set aside: it is still GROUP-i, start it again
        try:
            client.start(step.container_id)
        except Exception as e:
            log.warning("could not start a shard again", shard=step.name, error=explain(e))
    lost = [s.index for s in chunk if s.index in bad and s.index in aside
            and not put_back(run, s, created.get(s.index), aside[s.index])]
    ctx.draining -= set(idx)
    back = [i for i in idx if i not in lost]  # each one started again: a successor, or put back
    run.door_error = None
    back_in = not back or (run.door("after_start", back) and run.door("add_backends", back))
    refused: list[int] = list(run.door_error.indexes) if isinstance(run.door_error, NotAdmitted) else []
    if not back_in:  # a successor that died (or was restarted) since its settle check: that is the news
        def steady(i: int) -> bool:
            return i in created and Container(unless_gone(client.inspect_container, created[i]) or {}).steadily_running

        refused += [i for i in good if i not in refused and not steady(i)]
    deaf = [i for i in good if i in refused]
    if deaf:
        # The door would not take these successors in (the kernel door: they never listened within
        # its bound), or they stopped meanwhile: they do not serve, so their previous versions come
        # back. Any other door failure stops the rolling with the successors kept, as before.
        why = str(run.door_error)
        for i in deaf:
            bad[i] = f"its successor was not taken into the front door ({why})"
        good = [i for i in good if i not in deaf]
        returned = [s.index for s in chunk if s.index in deaf and put_back(run, s, created.get(s.index), aside[s.index])]
        if returned:
            run.door("after_start", returned) and run.door("add_backends", returned)
    for step in chunk:
        if step.index in good:
            remove_container(client, aside[step.index])
            run.out.replaced.append(step.index)
            run.out.lines.append(f"replaced {step.name} (cpus {cpulist.format(step.shard.cpus)})")
    for step in chunk:
        if step.index in bad:
            run.fail(step.name, bad[step.index])
    if bad:
        run.out.stopped_at = ", ".join(s.name for s in chunk if s.index in bad)
        return False
    return back_in  # a door that could not take them back: take no other shard out


def put_back(run: _Run, step: P.Step, successor: str | None, previous: str) -> bool:
    """Undo one rolling step: the successor goes, the previous container comes back."""
    client = run.client
    try:
        if successor:
            unless_gone(client.stop, successor, timeout=2)
            remove_container(client, successor)
        client.rename(previous, step.name)
        client.start(previous)
        run.ctx.started[step.index] = client.inspect_container(previous)
        run.out.lines.append(f"put the previous version of {step.name} back")
        return True
    except Exception as e:
        run.fail(step.name, f"its previous version ({names.previous_name(run.ctx.group, step.index)}) "
                            f"could not be put back: {explain(e)}")
        return False


def health(run: _Run, created: dict[int, str], starts: dict[int, float]) -> dict[int, str]:
    """Which successors are not healthy, and why: the settle check for all, then, for an image
    with a Docker healthcheck, its verdict (``healthy`` within ``health_timeout``)."""
    ctx = run.ctx
    down = settle_check(ctx, created, starts, run.opts.workers)
    out = {i: down_reason(ctx, created, i, d, run.began) for i, d in down.items()}
    deadline = time.monotonic() + run.opts.health_timeout
    for i, cid in sorted(created.items()):
        if i in out:
            continue
        while ((ctx.started.get(i) or {}).get("State") or {}).get("Health"):
            health = ctx.started[i]["State"]["Health"]
            status = health.get("Status")
            if status == "healthy":
                break
            if status == "unhealthy" or not ctx.started[i]["State"].get("Running") or time.monotonic() > deadline:
                probes = health.get("Log") or [{}]
                last = " ".join(str(probes[-1].get("Output") or "").split())[:200]
                out[i] = f"did not become healthy ({status}{': ' + last if last else ''})"
                break
            time.sleep(0.2)
            ctx.started[i] = run.client.inspect_container(cid)
    return out
