"""The converge plan: what to do with each shard of a group so that it becomes what a spec says.

One pure function, :func:`plan`, serves ``repair``, ``scale`` and ``update`` (like docker-compose's
convergence plan, which compares each container with its service's config hash): it looks only at
the group as found on the daemon (:class:`tesson.group.Group`, rebuilt from labels) and at the
spec wanted (the group's own for ``repair``, a new plan for ``scale``, a new image/command/config
for ``update``), and gives every shard index one :class:`Step`: an action and the reason for it.
:mod:`tesson.runtime.converge` carries a plan out.

Per index of the wanted plan, the first rule that matches:

1. a previous container is kept aside for it (``GROUP-i.prev``: an ``update`` step was cut
   short): ``finish`` (drop the previous one) when ``GROUP-i`` is up, else ``restore`` (put the
   previous one back in place of whatever ``GROUP-i`` is);
2. no container, or a dead one (or one being removed): ``create`` for an index the group did not
   have (``scale`` up), else ``recreate``;
3. paused or restarting: ``leave`` (the user's, or Docker's, business);
4. with ``update``, made from another image, command or config than the spec (its labels), or
   from another image id than ``image_id`` (a tag moved to a new build): ``replace`` when it is
   up (the rolling step: out of the door, drained, successor healthy, in), ``recreate`` when it
   is stopped (nothing to keep serving);
5. stopped (exited, or only created): ``restart`` (re-pinned first if its CPUs differ);
6. up on other CPUs or memory nodes than planned, or with other 'auto' limits than they come to
   there (the spec's ``limits_auto``, read from its container): ``repin`` (live: Docker's
   container update, the limits with the cpuset);
7. otherwise ``keep``.

Every shard container of an index beyond the wanted plan (``scale`` down, or one left by a
scale cut short) gets ``remove``: out of the door, drained, stopped, removed.

Hazards: a group's labels are immutable, so a re-pinned shard keeps the CPUs it was made on in its
labels, and a shared group's label plan is stale once the pool re-pinned it: the spec wanted must
say where the shards should be *now* (tesson.sharing.replan) and the group passed in must carry
the *true* pinning (:func:`tesson.group.read_pins`), or a shard would be made again, or moved back,
onto CPUs an exclusive group holds. Two containers claiming one index (not a ``.prev``) are left
alone, as ``ps`` notes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tesson.group import differs

if TYPE_CHECKING:
    from tesson.group import Group, ShardState
    from tesson.placement import Shard
    from tesson.spec import Spec

KEEP = "keep"  # up where it should be: nothing to do
RESTART = "restart"  # its container is there, stopped: start it again
RECREATE = "recreate"  # dead or gone (or stopped and outdated): a new container on the planned CPUs
LEAVE = "leave"  # Docker is on it (restarting) or the user paused it: not ours to touch
REPIN = "repin"  # up on other CPUs than planned: move it live (no restart, same container)
CREATE = "create"  # an index the group did not have: new container, settled, then into the door
REMOVE = "remove"  # an index beyond the plan: out of the door, drained, stopped, removed
REPLACE = "replace"  # up but outdated: the rolling step (previous kept until its successor is healthy)
FINISH = "finish"  # a replace cut short whose successor is up: drop the previous container
RESTORE = "restore"  # a replace cut short whose successor is not up: put the previous container back

# The order the executor takes the actions in: half-done steps first, then capacity (starts and
# creates before removals), re-pins once the shards they share CPUs with are in place, and the
# rolling replacement last, when everything else is up.
ORDER = (FINISH, RESTORE, RESTART, RECREATE, CREATE, REMOVE, REPIN, REPLACE)

# The actions that put a shard on CPUs (a group in the shared pool does them under the daemon's lock).
PLACING = (RESTART, RECREATE, CREATE, REPIN, REPLACE)

RESTARTABLE = ("exited", "created")
RECREATABLE = ("dead", "missing", "removing")


@dataclass(frozen=True)
class Step:
    """What to do with one shard, and why (its state as found)."""

    index: int
    name: str
    action: str  # one of the actions above
    reason: str  # the shard's state (running, exited, dead, missing, paused...) or why it changes
    shard: Shard  # where it should run: the planned CPUs and memory nodes (for remove: where it is)
    container_id: str = ""  # its container as found ("" when missing)
    cpus: tuple[int, ...] = ()  # the CPUs its container has now (() when missing)
    previous_id: str = ""  # finish/restore: the previous container kept aside (GROUP-i.prev)
    mems: tuple[int, ...] = ()  # the memory nodes its container has now


@dataclass(frozen=True)
class Plan:
    group: str
    steps: tuple[Step, ...]  # by shard index, surplus shards last

    def with_action(self, action: str) -> list[Step]:
        return [s for s in self.steps if s.action == action]

    @property
    def work(self) -> list[Step]:
        """The steps that change something, in the order the executor takes them."""
        return [s for action in ORDER for s in self.with_action(action)]

    def summary(self) -> str:
        """``2 create, 1 repin`` (``nothing to do``): for logs and dry runs."""
        counts = [(a, len(self.with_action(a))) for a in ORDER]
        return ", ".join(f"{n} {a}" for a, n in counts if n) or "nothing to do"


RepairPlan = Plan  # the name repair's plan had before scale and update shared it


def outdated(st: ShardState, want_labels: dict, image_id: str = "") -> bool:
    """Whether a shard's container is another version than the one wanted."""
    if differs(st.labels, want_labels):
        return True
    return bool(image_id and st.image_id and st.image_id != image_id)


def auto_limits(want: Spec, index: int) -> dict:
    """The 'auto' limits shard ``index`` has in ``want`` ({} when none follow its CPUs)."""
    lims = want.limits[index] if 0 <= index < len(want.limits) and isinstance(want.limits[index], dict) else {}
    return {k: v for k, v in lims.items() if k in want.limits_auto}


def limits_follow(st: ShardState, want: Spec, index: int) -> bool:
    """Whether a shard's container (its limits read) has other 'auto' limits than ``want`` gives."""
    auto = auto_limits(want, index)
    if not auto or st.limits is None:
        return False
    from tesson.quotas import update_body

    send = update_body(st.limits, auto)
    return any(st.limits.get(k) != v for k, v in send.items() if k != "MemorySwap")


def plan(grp: Group, want: Spec | None = None, image_id: str = "", update: bool = False) -> Plan:
    """The steps that make ``grp`` what ``want`` says (default: its own spec, i.e. a repair).

    ``update``: also replace shards made from another version (rule 4); ``image_id``: the id the
    wanted image has on the daemon now. Raises ValueError for a group without a spec."""
    want = want or grp.spec
    if want is None:
        raise ValueError(f"group {grp.name!r} has no spec to plan from")
    want_labels = want.labels()
    found = {st.index: st for st in grp.shards}
    steps: list[Step] = []
    for planned in want.shards:
        st = found.get(planned.index)
        name = st.name if st is not None else f"{grp.name}-{planned.index}"
        here = (st.id, tuple(st.cpus), "", tuple(st.mems)) if st is not None and st.id else ("", (), "", ())
        prev = grp.previous.get(planned.index)
        if prev is not None:
            action = FINISH if st is not None and st.up else RESTORE
            reason = f"{st.state if st is not None else 'missing'}, previous version kept as {prev.name}"
            steps.append(Step(planned.index, name, action, reason, planned, here[0], here[1], prev.id, here[3]))
            continue
        state = st.state if st is not None else "missing"
        if st is None:
            action, reason = CREATE, "new"
        elif state in RECREATABLE:
            action, reason = RECREATE, state
        elif not st.up and state not in RESTARTABLE:
            action, reason = LEAVE, state
        elif update and outdated(st, want_labels, image_id):
            action, reason = (REPLACE if st.up else RECREATE), f"{state}, outdated"
        elif state in RESTARTABLE:
            action, reason = RESTART, state
        elif (list(st.cpus), list(st.mems)) != (list(planned.cpus), list(planned.mems)):
            action, reason = REPIN, f"{state}, on other CPUs"
        elif limits_follow(st, want, planned.index):
            action, reason = REPIN, f"{state}, with other limits than its CPUs give"
        else:
            action, reason = KEEP, state
        steps.append(Step(planned.index, name, action, reason, planned, *here))
    size = len(want.shards)
    surplus = [st for st in grp.shards if st.index >= size and st.id]
    surplus += [st for st in grp.extra if st.index >= size]
    surplus += [st for i, st in sorted(grp.previous.items()) if i >= size]
    from tesson.spec import make_shard

    for st in sorted(surplus, key=lambda s: (s.index, s.name)):
        where = make_shard(st.index, st.cpus, st.mems)
        steps.append(Step(st.index, st.name, REMOVE, f"{st.state}, beyond the plan", where, st.id, tuple(st.cpus), "", tuple(st.mems)))
    return Plan(grp.name, tuple(steps))


def plan_repair(grp: Group) -> Plan:
    """``repair``'s plan: :func:`plan` towards the group's own spec (ValueError without one)."""
    return plan(grp)
