"""Turn a plan into pinned containers, and stop or repair them: all through docker-py's APIClient.

- :mod:`.pool`: the bounded worker pool, the progress line, Ctrl-C and SIGTERM;
- :mod:`.body`: one shard's create body, creating and starting it;
- :mod:`.settle`: is a shard just started still up a moment later, and if not, why;
- :mod:`.run`: ``run``, all or nothing;
- :mod:`.stop`: ``stop`` (and ``--purge``: containers, then the group's networks);
- :mod:`.plan`: the converge plan (pure), for ``repair``, ``scale`` and ``update``;
- :mod:`.converge`: its one executor (front-door hooks, re-pin, rolling replacement);
- :mod:`.drain`: waiting for a shard out of the front door to lose its connections;
- :mod:`.repair`: ``repair``, that plan towards the group's own spec;
- :mod:`.change`: ``scale`` and ``update``: the lock, the spec record, the new spec.
"""

from tesson.runtime.body import shard_body
from tesson.runtime.pool import MAX_WORKERS, Interrupted, Progress
from tesson.runtime.repair import RepairPlan, Step, plan_repair, repair
from tesson.runtime.run import GroupInUse, run
from tesson.runtime.settle import SETTLE
from tesson.runtime.stop import purge_leftovers, stop

__all__ = [
    "MAX_WORKERS", "SETTLE", "GroupInUse", "Interrupted", "Progress", "RepairPlan", "Step",
    "plan_repair", "purge_leftovers", "repair", "run", "shard_body", "stop",
]
