"""``repair``: a pure plan of what to do with each shard of a group, then carrying it out.

:func:`plan_repair` looks only at the group as found on the daemon (like docker-compose's
convergence plan): each shard gets one :class:`Step`, an action and the reason for it. :func:`repair`
carries the plan out: every shard is tried, those brought back are kept whatever happens to the
others or to the frontend, and the same settle check as ``run`` decides whether a shard counts as
repaired (one that falls over again at once is left in place for a later repair).

The actions are a vocabulary the coming verbs extend: ``scale`` adds ``create`` and ``remove`` (and
re-pins kept shards with ``recreate``), a rolling ``update`` adds ``replace``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tesson import cpulist, log
from tesson import labels as L
from tesson.container import Container
from tesson.docker_client import explain, remove_container
from tesson.errors import TessonError
from tesson.runtime.body import start_shard
from tesson.runtime.pool import MAX_WORKERS, Batch, Cancelled, Interrupted, NoProgress, Progress, interrupts
from tesson.runtime.run import new_run_id
from tesson.runtime.settle import down_reason, settle_check

if TYPE_CHECKING:
    from tesson.frontend import Context, Frontend
    from tesson.group import Group
    from tesson.placement import Shard

KEEP = "keep"  # up: nothing to do
RESTART = "restart"  # its container is there, stopped: start it again
RECREATE = "recreate"  # dead or gone: a new container on the planned CPUs
LEAVE = "leave"  # Docker is on it (restarting) or the user paused it: not ours to touch

RESTARTABLE = ("exited", "created")
RECREATABLE = ("dead", "missing", "removing")


@dataclass(frozen=True)
class Step:
    """What to do with one shard, and why (its state as found)."""

    index: int
    name: str
    action: str  # KEEP, RESTART, RECREATE or LEAVE
    reason: str  # the shard's state: running, exited, dead, missing, paused, ...
    shard: Shard  # where it runs: the planned CPUs and memory nodes
    container_id: str = ""  # its container as found ("" when missing)
    cpus: tuple[int, ...] = ()  # the CPUs its container has now (its labels; () when missing)


@dataclass(frozen=True)
class RepairPlan:
    group: str
    steps: tuple[Step, ...]  # by shard index

    def with_action(self, action: str) -> list[Step]:
        return [s for s in self.steps if s.action == action]

    @property
    def work(self) -> list[Step]:
        """The steps that change something, restarts first (as repair starts them)."""
        return self.with_action(RESTART) + self.with_action(RECREATE)


def plan_repair(grp: Group) -> RepairPlan:
    """The plan for ``grp`` (which must have a spec): keep what is up, restart what exited or was
    only created, recreate what is dead, gone or being removed, leave the rest alone."""
    if grp.spec is None:
        raise ValueError(f"group {grp.name!r} has no spec to plan a repair from")
    planned = {s.index: s for s in grp.spec.shards}
    steps = []
    for st in grp.shards:
        if st.up:
            action = KEEP
        elif st.state in RESTARTABLE:
            action = RESTART
        elif st.state in RECREATABLE:
            action = RECREATE
        else:
            action = LEAVE
        steps.append(Step(st.index, st.name, action, st.state, planned[st.index], st.id, tuple(st.cpus)))
    return RepairPlan(grp.name, tuple(steps))


def _line_order(line: str) -> tuple[int, int, str]:
    m = re.search(r"-(\d+)\b", line)
    return (0 if m else 1, int(m.group(1)) if m else 0, line)


def repair(ctx: Context, fe: Frontend, workers: int = MAX_WORKERS) -> list[str]:
    """Carry out :func:`plan_repair` for ``ctx.state``, then bring the frontend in line; returns one
    line per thing done.

    A shard counts as repaired only if it is still up ``SETTLE`` seconds after its start; one that
    falls over again at once is left as it is and reported like one that could not be started.
    The frontend's ``repair`` is called for the shards repaired, also when others failed. If any
    shard (or the frontend) could not be brought back, TessonError (exit 1) names it and why, and
    says what was repaired. Ctrl-C removes only what is half-made (a recreated shard not started
    yet); shards already repaired stay.
    """
    if ctx.state is None:
        raise ValueError("repair needs the group as found on the daemon (Context.for_group)")
    plan = plan_repair(ctx.state)
    return execute(ctx, fe, plan, workers)


def execute(ctx: Context, fe: Frontend, plan: RepairPlan, workers: int = MAX_WORKERS) -> list[str]:
    """Carry out a repair plan (see :func:`repair`)."""
    from tesson.frontend import Undo

    client = ctx.docker
    if plan.with_action(RECREATE):
        ctx.load_config()  # from a surviving shard: the labels keep only its digest
    new_run_id(ctx)
    began = time.time()
    lines = [f"left {s.name} alone: it is {s.reason}" for s in plan.with_action(LEAVE)]
    work = plan.work
    progress = Progress(len(work), "repaired")
    done: dict[int, str] = {}  # index -> what was done, for each shard started (and, later, still up)
    created: dict[int, str] = {}  # index -> container id of each shard started
    starts: dict[int, float] = {}  # index -> when its start returned, for the settle check
    lock = threading.Lock()

    def one(step: Step, batch: Batch) -> None:
        if step.action == RESTART:
            batch.check()
            client.start(step.container_id)
            with lock:
                created[step.index], starts[step.index] = step.container_id, time.monotonic()
            line = f"restarted {step.name} (cpus {cpulist.format(step.cpus)})"
        else:
            if step.container_id:
                remove_container(client, step.container_id)
            # A recreated shard that fails to start is kept, created: it holds the shard's place
            # and labels, and the next repair starts it. Only Ctrl-C takes away what is half-made.
            mine = Undo()
            try:
                start_shard(ctx, fe, step.shard, batch, NoProgress(), created, starts, mine)
            except Cancelled:
                mine.rollback()
                raise
            line = f"recreated {step.name} (cpus {cpulist.format(step.shard.cpus)})"
        with lock:
            done[step.index] = line
        progress.step()

    batch = Batch(workers, stop_on_error=False)
    fell: list[tuple[int, str]] = []
    try:
        with interrupts():
            try:
                batch.run(one, work)
            finally:
                progress.close()
            up = {i: created[i] for i in done}
            down = settle_check(ctx, up, {i: starts[i] for i in done}, workers)
            for i, d in down.items():
                fell.append((i, f"{ctx.shard_name(i)} ({down_reason(ctx, up, i, d, began)})"))
                del done[i]
                ctx.started.pop(i, None)
    except KeyboardInterrupt:
        with interrupts(ignore=True):
            half = _half_made(client, ctx, plan.with_action(RECREATE), list(done))
        kept = ", ".join(sorted((ctx.shard_name(i) for i in done), key=_line_order)) or "none"
        raise Interrupted(f"interrupted; shards already repaired are kept ({kept}){half}") from None
    lines.extend(done.values())
    failed = [text for _, text in sorted([(step.index, f"{step.name} ({explain(exc)})") for step, exc in batch.errors] + fell)]
    # The repaired shards are healthy now: neither a shard that could not be repaired nor a frontend
    # that cannot be brought in line (Gorb down, say) takes them away again.
    fe_error = None
    try:
        lines.extend(fe.repair(ctx, sorted(done)))
    except TessonError as e:
        fe_error = str(e)
    except Exception as e:  # a daemon error inside the frontend: still one line, never "internal error"
        fe_error = f"{fe.kind} frontend could not be brought in line: {explain(e)}"
    lines.sort(key=_line_order)
    if not failed and fe_error is None:
        return lines
    did = "; ".join(lines) or "no shard"
    again = f"run 'tesson repair -g {ctx.group}' again once that is fixed"
    if failed:
        msg = f"could not repair {', '.join(failed)}"
        if fe_error:
            msg += f"; and: {fe_error}"
        raise TessonError(f"{msg} (repaired: {did}; {again})")
    raise TessonError(f"{fe_error} (shards repaired: {did}; {again})")


def _half_made(client: Any, ctx: Context, recreate: list[Step], done: list[int]) -> str:
    """After Ctrl-C in repair: remove recreated shards that never started (this repair's run id)."""
    removed = []
    for step in recreate:
        if step.index in done:
            continue
        try:
            found = client.containers(all=True, filters=L.filters(run=ctx.labels[L.RUN], shard=str(step.index)))
        except Exception:
            continue
        for c in map(Container, found):
            if c.running:
                continue
            try:
                remove_container(client, c.id)
                removed.append(step.name)
            except Exception as e:
                log.warning("could not remove a half-made shard", shard=step.name, error=explain(e))
    return f"; removed the half-made {', '.join(removed)}" if removed else ""
