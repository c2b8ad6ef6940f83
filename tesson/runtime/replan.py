"""The spec a converge goes to, for a group found on the daemon: where its shards should be *now*.

A shared group's labels hold the plan it started with; the shared pool re-pins its shards live when
exclusive groups come and go, and labels never change. So ``repair``, ``start``, ``scale`` and
``update`` do not recreate or replace a shard from its label plan: they read the topology and the
daemon's groups, and plan the group again where it stands (tesson.sharing.replan: a shared group
over the pool as it is now, an exclusive one on the CPUs it holds), with its 'auto' limits computed
for those CPUs; the group's true pins are read from its containers (tesson.group.read_pins).
``repair``/``start`` and ``scale`` then make or move shards holding the daemon's lock
(tesson.daemon_lock), so no ``run --exclusive`` takes those CPUs meanwhile. ``update`` does not
hold it through its rolling replacement (minutes, with health checks and drains, while every
``run`` would wait): a ``run --exclusive`` in the middle re-pins the shards it lists, and a
successor made after its listing is moved off the exclusive CPUs by the next ``repair``.

Groups made by a tesson without the pool (no ``io.tesson.machine``) and exclusive groups kept at
their size are planned from their labels, as before: no topology read, no lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tesson.errors import TessonError

if TYPE_CHECKING:
    from tesson.group import Group
    from tesson.spec import Spec
    from tesson.topology import Topology

Where = tuple  # (fsroot, fsroot_given): where the command line says the topology is


def pooled(grp: Group) -> bool:
    """Whether where the group's shards belong depends on the other groups: a shared group that a
    tesson with the pool made (tesson.holdings)."""
    spec = grp.spec
    return spec is not None and bool(spec.machine) and not spec.exclusive


def topology_of(client: Any, where: Where | None) -> Topology:
    """The topology of the daemon's host (tesson.probe's rule), read whole (isolated CPUs too)."""
    from tesson import probe, topology

    fsroot, given = where or ("/", False)
    return topology.read(probe.source(fsroot, given, client=client, ask=True).fsroot)


def spec_now(client: Any, grp: Group, topo: Topology, size: int | None = None,
             no_isolated: bool = False) -> tuple[Spec, list]:
    """``(spec, moves)``: the group's spec with its shards and limits where they should be now (for
    ``size`` shards: a scale), and the live re-pins of shared groups that needs
    (tesson.holdings.Move, containers filled in). ``no_isolated``: leave the kernel's isolated CPUs
    out from now on (scale --no-isolated), whatever the group was run with."""
    from tesson import daemon_claims, holdings, sharing

    if grp.spec is None:
        raise TessonError(f"group {grp.name!r}: its containers' labels are incomplete, cannot rebuild its plan")
    claims, why = daemon_claims.load(topo, client)
    if claims is None:
        raise TessonError(f"cannot list the groups on the daemon: {why}")
    me = holdings.claim_from_labels(grp.labels)
    if me is None:
        raise TessonError(f"group {grp.name!r}: its containers' labels are incomplete, cannot rebuild its plan")
    me.no_isolated = me.no_isolated or no_isolated
    holdings.mark_foreign(topo, me, grp.labels)
    shards, lims, moves = sharing.replan(topo, claims, me, size)
    claimed = {c.name: c for c in claims}
    for m in moves:
        m.containers = claimed[m.group].containers.get(m.index, [])
    spec = grp.spec._replace(shards=list(shards), limits=list(lims) if lims else list(grp.spec.limits),
                               no_isolated=me.no_isolated)
    return spec, moves


def lock_image(client: Any, grp: Group) -> str:
    """An image the daemon has, for its lock container: the group's, else the tesson image."""
    from tesson import default_image
    from tesson.docker_client import unless_gone

    for image in (grp.image, default_image()):
        if image and unless_gone(client.inspect_image, image) is not None:
            return image
    return grp.image


@contextlib.contextmanager
def daemon_lock(client: Any, grp: Group, needed: bool = True) -> Iterator[str | None]:
    """The daemon's lock for the ``with`` block when ``needed``, else nothing."""
    if not needed:
        yield None
        return
    from tesson import daemon_lock as lock

    with lock.held(client, lock_image(client, grp)) as cid:
        yield cid
