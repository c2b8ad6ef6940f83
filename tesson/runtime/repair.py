"""``repair``: the converge plan towards the group's own spec (:mod:`.plan`), carried out by the one
executor (:mod:`.converge`), and the one-line report of what could not be repaired.

Every shard is tried; those brought back are kept whatever happens to the others or to the
frontend, and the same settle check as ``run`` decides whether a shard counts as repaired (one
that falls over again at once is left in place for a later repair). A ``scale`` or ``update`` cut
short is finished or undone by the same plan (a ``.prev`` container, a shard on other CPUs than
planned, a surplus shard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tesson.errors import TessonError
from tesson.runtime.converge import Options, Outcome
from tesson.runtime.converge import execute as _execute
from tesson.runtime.plan import (  # noqa: F401 - repair's vocabulary, re-exported
    KEEP,
    LEAVE,
    RECREATABLE,
    RECREATE,
    RESTART,
    RESTARTABLE,
    Plan,
    RepairPlan,
    Step,
    plan_repair,
)
from tesson.runtime.pool import MAX_WORKERS

if TYPE_CHECKING:
    from tesson.frontend import Context, Frontend


def repair(ctx: Context, fe: Frontend, workers: int = MAX_WORKERS) -> list[str]:
    """Carry out :func:`plan_repair` for ``ctx.state``, then bring the frontend in line; returns one
    line per thing done.

    The frontend's ``repair`` is called for the shards repaired, also when others failed. If any
    shard (or the frontend) could not be brought back, TessonError (exit 1) names it and why, and
    says what was repaired. Ctrl-C removes only what is half-made (a recreated shard not started
    yet); shards already repaired stay.
    """
    if ctx.state is None:
        raise ValueError("repair needs the group as found on the daemon (Context.for_group)")
    return execute(ctx, fe, plan_repair(ctx.state), workers)


def execute(ctx: Context, fe: Frontend, plan: Plan, workers: int = MAX_WORKERS) -> list[str]:
    """Carry out a repair plan (see :func:`repair`)."""
    return report(_execute(ctx, fe, plan, Options(workers=workers)), ctx.group)


def report(out: Outcome, group: str, verb: str = "repair") -> list[str]:
    """The lines of a converge, or TessonError: ``could not repair web-1 (why) (repaired: ...; run
    'tesson repair -g web' again once that is fixed)``."""
    if not out.failed and out.fe_error is None:
        return out.lines
    did = "; ".join(out.lines) or "no shard"
    again = f"run 'tesson {verb} -g {group}' again once that is fixed" if verb == "repair" else \
        f"run 'tesson repair -g {group}' (or the same {verb} again) once that is fixed"
    if out.failed:
        msg = f"could not {verb} {', '.join(out.failed)}"
        if out.fe_error:
            msg += f"; and: {out.fe_error}"
        raise TessonError(f"{msg} ({'repaired' if verb == 'repair' else 'done'}: {did}; {again})")
    raise TessonError(f"{out.fe_error} ({'shards repaired' if verb == 'repair' else 'done'}: {did}; {again})")
