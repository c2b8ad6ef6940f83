"""The one executor of a converge plan (:mod:`tesson.runtime.plan`), for ``repair``, ``scale`` and
``update``.

The phases, in :data:`plan.ORDER`: half-done rolling steps are finished or undone; stopped shards
are started, dead or missing ones recreated and new ones created (a bounded pool), all checked
half a second later as ``run`` checks (the settle check), and only the new ones that stayed up go
into the front door (``fe.add_backends``; until then they are held out, ``fe.hold_backends``, for
a door that would take a running shard in by itself); surplus shards leave the door
(``fe.remove_backends``), are drained (after the door's ``removal_lag``, their open connections get
``--drain-timeout`` to end), stopped and removed
(``fe.forget_backends``); kept shards on other CPUs are re-pinned live (``repin.container``); then the
rolling replacement, ``parallel`` shards at a time (:mod:`tesson.runtime.rolling`: out of the door,
drained, set aside as ``GROUP-i.prev``, the successor started, healthy and in the door before the
previous one is removed; a successor that fails puts the previous one back and stops the rolling).
Every shard this executor starts is set up by ``fe.after_start`` before it joins the door. Last,
``fe.repair`` brings the frontend in line as ``repair`` always did.

Every shard is tried in the phases before the rolling one, and what was brought up is kept
whatever happens to the others; the :class:`Outcome` says what was done and what failed, and the
verbs turn it into their message. A process that dies halfway leaves only states the plan knows
(a ``.prev`` container, a shard on old CPUs, a missing shard, a surplus one), so ``repair`` or
the same command again converges.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tesson import cpulist, log
from tesson.docker_client import explain, remove_container, unless_gone
from tesson.errors import TessonError
from tesson.runtime import plan as P
from tesson.runtime import rolling
from tesson.runtime.body import start_shard
from tesson.runtime.drain import DRAIN_FLOOR, DRAIN_TIMEOUT, drain
from tesson.runtime.pool import MAX_WORKERS, Batch, Cancelled, Interrupted, NoProgress, Progress, interrupts
from tesson.runtime.repin import container as repin
from tesson.runtime.run import new_run_id
from tesson.runtime.settle import down_reason, settle_check

if TYPE_CHECKING:
    from tesson.frontend import Context, Frontend


@dataclass
class Options:
    drain_timeout: float = DRAIN_TIMEOUT
    parallel: int = 1  # update --parallel K
    health_timeout: float = rolling.HEALTH_TIMEOUT
    workers: int = MAX_WORKERS


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)  # one per thing done
    failed: list[str] = field(default_factory=list)  # "web-1 (why)" per shard that could not be done
    fe_error: str | None = None  # the frontend could not be brought in line
    stopped_at: str = ""  # the rolling replacement stopped at this shard (its successor failed)
    replaced: list[int] = field(default_factory=list)  # indexes whose successor is in
    unremoved: list[int] = field(default_factory=list)  # surplus indexes still there (their CPUs still used)

    @property
    def ok(self) -> bool:
        return not self.failed and self.fe_error is None and not self.stopped_at


def line_order(line: str) -> tuple[int, int, str]:
    m = re.search(r"-(\d+)\b", line)
    return (0 if m else 1, int(m.group(1)) if m else 0, line)


def execute(ctx: Context, fe: Frontend, plan: P.Plan, opts: Options | None = None) -> Outcome:
    """Carry out ``plan`` on the group of ``ctx`` (whose labels, image, command, config and shards
    are those of the spec converged to). Ctrl-C: Interrupted, naming what was kept."""
    opts = opts or Options()
    if any(plan.with_action(a) for a in (P.CREATE, P.RECREATE, P.REPLACE)):
        ctx.load_config()  # from a surviving shard when the spec came from labels (they keep a digest)
    new_run_id(ctx)
    run = _Run(ctx, fe, opts)
    run.out.lines += [f"left {s.name} alone: it is {s.reason}" for s in plan.with_action(P.LEAVE)]
    try:
        with interrupts():
            run.half_done(plan.with_action(P.FINISH), plan.with_action(P.RESTORE))
            run.bring_up(plan.with_action(P.RESTART) + plan.with_action(P.RECREATE), plan.with_action(P.CREATE))
            run.remove(plan.with_action(P.REMOVE))
            run.repin(plan.with_action(P.REPIN))
            rolling.replace(run, plan.with_action(P.REPLACE))
    except KeyboardInterrupt:
        with interrupts(ignore=True):
            half = run.half_made(plan.with_action(P.RECREATE) + plan.with_action(P.CREATE))
        kept = ", ".join(sorted(run.out.lines, key=line_order)) or "nothing done yet"
        raise Interrupted(f"interrupted (kept: {kept}){half}; 'tesson repair -g {ctx.group}' finishes "
                          f"or undoes a step cut short") from None
    if any(plan.with_action(a) for a in (P.CREATE, P.REMOVE, P.REPLACE, P.FINISH, P.RESTORE)):
        from tesson import group as G

        ctx.state = G.find(ctx.docker, ctx.group) or ctx.state  # containers came and went: as it is now
    try:
        run.out.lines.extend(fe.repair(ctx, sorted(run.brought_back)))
    except TessonError as e:
        run.out.fe_error = str(e)
    except Exception as e:  # a daemon error inside the frontend: still one line, never "internal error"
        run.out.fe_error = f"{fe.kind} frontend could not be brought in line: {explain(e)}"
    run.out.lines.sort(key=line_order)
    return run.out


def hold(ctx: Context, fe: Frontend, plan: P.Plan) -> None:
    """Hold the plan's new shards out of the front door before a change alters anything (``scale``
    up, ahead of its re-pins and spec record): TessonError, one line, when the door refuses (a kernel
    door whose agent is down), and nothing is made. :func:`execute` then does not hold them again."""
    new = sorted(s.index for s in plan.with_action(P.CREATE))
    if not new:
        return
    ctx.draining |= set(new)
    try:
        fe.hold_backends(ctx, new)
    except Exception as e:
        ctx.draining -= set(new)
        why = str(e) if isinstance(e, TessonError) else explain(e)
        raise TessonError(f"{fe.kind} front door cannot keep new shards {', '.join(map(ctx.shard_name, new))} out "
                          f"until they are healthy; nothing changed: {why}") from None


def let_go(ctx: Context, fe: Frontend, plan: P.Plan) -> None:
    """Undo :func:`hold` when the change fails before :func:`execute`: the door holds out only what
    ``ctx.draining`` still has (best effort: a door that fails here is logged, and let go by the
    next ``repair``)."""
    new = {s.index for s in plan.with_action(P.CREATE)}
    if not new & ctx.draining:
        return
    ctx.draining -= new
    try:
        fe.hold_backends(ctx, sorted(ctx.draining))
    except Exception as e:
        log.warning("could not let go of the new shards' hold", error=str(e) if isinstance(e, TessonError) else explain(e))


class _Run:
    def __init__(self, ctx: Context, fe: Frontend, opts: Options) -> None:
        self.ctx, self.fe, self.opts, self.client = ctx, fe, opts, ctx.docker
        self.out = Outcome()
        self.began = time.time()
        self.brought_back: list[int] = []  # for fe.repair: restarted, recreated, restored
        self.done: dict[int, str] = {}
        self.lock = threading.Lock()
        self.door_error: Exception | None = None  # the last hook failure (tesson.frontend.NotAdmitted says whose)

    def auto(self, index: int) -> dict:
        """Shard ``index``'s 'auto' limits where the plan puts it: they go with a re-pin."""
        lims = self.ctx.limits[index] if 0 <= index < len(self.ctx.limits) else {}
        return {k: v for k, v in (lims or {}).items() if k in self.ctx.limits_auto}

    def fail(self, name: str, why: str) -> None:
        with self.lock:
            self.out.failed.append(f"{name} ({why})")

    def pool(self, fn: Callable[[Any, Batch], None], items: Iterable[Any]) -> Batch:
        batch = Batch(self.opts.workers, stop_on_error=False)
        batch.run(fn, items)
        return batch

    # -- rolling steps cut short ----------------------------------------------------------------
    def half_done(self, finish: list[P.Step], restore: list[P.Step]) -> None:
        restored: list[int] = []
        for step in finish:
            try:
                remove_container(self.client, step.previous_id)
                self.out.lines.append(f"finished the update of {step.name}: removed its previous container")
            except Exception as e:
                self.fail(step.name, f"its previous container could not be removed: {explain(e)}")
        for step in restore:
            try:
                if step.container_id:
                    unless_gone(self.client.stop, step.container_id, timeout=self.ctx.timeout)
                    remove_container(self.client, step.container_id)
                self.client.rename(step.previous_id, step.name)
                self.client.start(step.previous_id)
                self.ctx.started[step.index] = self.client.inspect_container(step.previous_id)
                self.brought_back.append(step.index)
                restored.append(step.index)
                self.out.lines.append(f"restored the previous version of {step.name} (its update was cut short)")
            except Exception as e:
                self.fail(step.name, f"its previous version could not be put back: {explain(e)}")
        if restored:
            self.door("after_start", restored)

    # -- start, recreate, create --------------------------------------------------------------------
    def bring_up(self, repairs: list[P.Step], creates: list[P.Step]) -> None:
        ctx, client = self.ctx, self.client
        work = repairs + creates
        if not work:
            return
        new_idx = {s.index for s in creates}
        if new_idx - ctx.draining:  # out of the door until found healthy (unless hold() did it already)
            ctx.draining |= new_idx
            if not self.door("hold_backends", sorted(new_idx)):  # create none: a door that follows the
                ctx.draining -= new_idx  # daemon would take them in unchecked
                for s in creates:
                    self.fail(s.name, "not created: the front door could not hold it out until it is healthy")
                creates, new_idx, work = [], set(), repairs
                if not work:
                    return
        progress = Progress(len(work), "started")
        created: dict[int, str] = {}
        starts: dict[int, float] = {}
        done: dict[int, str] = {}

        def one(step: P.Step, batch: Batch) -> None:
            if step.action == P.RESTART:
                batch.check()
                cpus = step.cpus
                moved = (list(step.cpus), list(step.mems)) != (list(step.shard.cpus), list(step.shard.mems))
                if moved or self.auto(step.index):  # 'auto' limits follow the CPUs it starts on
                    repin(client, step.container_id, step.shard.cpus, step.shard.mems, self.auto(step.index))
                    cpus = step.shard.cpus
                client.start(step.container_id)
                with self.lock:
                    created[step.index], starts[step.index] = step.container_id, time.monotonic()
                line = f"restarted {step.name} (cpus {cpulist.format(cpus)})"
            else:
                if step.container_id:
                    remove_container(client, step.container_id)
                # One that fails to start is kept, created: it holds the shard's place and labels,
                # and the next repair starts it. Only Ctrl-C takes away what is half-made.
                from tesson.frontend import Undo

                mine = Undo()
                try:
                    start_shard(ctx, self.fe, step.shard, batch, NoProgress(), created, starts, mine)
                except Cancelled:
                    mine.rollback()
                    raise
                verb = "created" if step.action == P.CREATE else "recreated"
                line = f"{verb} {step.name} (cpus {cpulist.format(step.shard.cpus)})"
            with self.lock:
                done[step.index] = line
            progress.step()

        try:
            batch = self.pool(one, work)
        finally:
            progress.close()
        for step, exc in batch.errors:
            self.fail(step.name, explain(exc))
        up = {i: created[i] for i in done}
        down = settle_check(ctx, up, {i: starts[i] for i in done}, self.opts.workers)
        for i, d in down.items():
            self.fail(ctx.shard_name(i), down_reason(ctx, up, i, d, self.began))
            del done[i]
            ctx.started.pop(i, None)
        self.out.lines.extend(done.values())
        new = [s.index for s in creates if s.index in done]
        self.brought_back += [s.index for s in repairs if s.index in done]
        ctx.draining -= new_idx
        if done and self.door("after_start", list(done)) and new:
            self.door("add_backends", new)

    def lag(self) -> float:
        """How long the front door's removal takes to be in effect (the drain waits it first)."""
        lag = self.fe.removal_lag
        return DRAIN_FLOOR if lag is None else lag

    def door(self, hook: str, indexes: list[int]) -> bool:
        """Call a front-door hook; a failure is the frontend's error (reported), False."""
        try:
            getattr(self.fe, hook)(self.ctx, sorted(indexes))
            return True
        except Exception as e:
            self.door_error = e
            why = str(e) if isinstance(e, TessonError) else explain(e)
            if self.out.fe_error is None:  # the first is the cause (putting back what a failed removal took out fails too)
                self.out.fe_error = f"{self.fe.kind} front door, {hook.replace('_', ' ')} {', '.join(map(self.ctx.shard_name, indexes))}: {why}"
            else:
                log.info("front door hook failed too", hook=hook, error=why)
            return False

    # -- surplus shards ---------------------------------------------------------------------------------
    def remove(self, steps: list[P.Step]) -> None:
        if not steps:
            return
        ctx = self.ctx
        door = [s.index for s in steps if s.name == ctx.shard_name(s.index)]
        ctx.draining |= set(door)
        if door and not self.door("remove_backends", door):
            ctx.draining -= set(door)
            for s in steps:
                self.fail(s.name, "not removed: it could not be taken out of the front door first")
            self.out.unremoved += [s.index for s in steps]
            return

        def one(step: P.Step, _batch: Batch) -> None:
            drain(self.client, step.container_id, self.opts.drain_timeout, self.lag())
            unless_gone(self.client.stop, step.container_id, timeout=ctx.timeout)
            remove_container(self.client, step.container_id)
            with self.lock:
                self.out.lines.append(f"removed {step.name} (cpus {cpulist.format(step.cpus)})")

        batch = self.pool(one, steps)
        for step, exc in batch.errors:
            self.fail(step.name, f"could not be removed: {explain(exc)}")
            self.out.unremoved.append(step.index)
        gone = [s.index for s in steps if s.name == ctx.shard_name(s.index) and all(e[0] is not s for e in batch.errors)]
        if gone:
            self.door("forget_backends", gone)
        ctx.draining -= set(door)

    # -- live re-pinning ------------------------------------------------------------------------------
    def repin(self, steps: list[P.Step]) -> None:
        def one(step: P.Step, _batch: Batch) -> None:
            repin(self.client, step.container_id, step.shard.cpus, step.shard.mems, self.auto(step.index))
            with self.lock:
                self.out.lines.append(f"re-pinned {step.name} live (cpus {cpulist.format(step.cpus)} -> "
                                      f"{cpulist.format(step.shard.cpus)})")

        for step, exc in self.pool(one, steps).errors:
            self.fail(step.name, f"could not be re-pinned: {explain(exc)}")

    def half_made(self, steps: list[P.Step]) -> str:
        """After Ctrl-C: remove shards this invocation created that never started."""
        from tesson import labels as L
        from tesson.container import Container

        removed = []
        for step in steps:
            try:
                found = self.client.containers(all=True, filters=L.filters(run=self.ctx.labels[L.RUN], shard=str(step.index)))
            except Exception:
                continue
            for c in map(Container, found):
                if c.running:
                    continue
                try:
                    remove_container(self.client, c.id)
                    removed.append(step.name)
                except Exception as e:
                    log.warning("could not remove a half-made shard", shard=step.name, error=explain(e))
        return f"; removed the half-made {', '.join(removed)}" if removed else ""


__all__ = ["DRAIN_TIMEOUT", "Options", "Outcome", "execute", "hold", "let_go"]
