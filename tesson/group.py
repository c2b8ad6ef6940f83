"""A group as Docker sees it, rebuilt from container labels alone (tesson keeps no state).

``io.tesson.group`` ties a group's containers together and ``io.tesson.role`` tells shards from the
frontend's containers (the vocabulary is :mod:`tesson.labels`). Every container of a group also
carries the group's *spec*, so ``repair`` can recreate any vanished shard from whatever is left,
and ``ps`` shows the group even when some shards are gone. The spec and its labels are
:mod:`tesson.spec`'s.
"""

from __future__ import annotations

import json

from tesson import cpulist, names
from tesson import labels as L
from tesson.container import Container
from tesson.request import Record
from tesson.spec import Spec, make_shard  # noqa: F401 - re-exported: a group's spec lives in tesson.spec

TYPE_CHECKING = False  # typing is not imported on the read-only verbs' path
if TYPE_CHECKING:

    from docker import APIClient


UP_STATES = ("running",)


class ShardState(Record):
    """One shard of a group as found: its container's state, or ``missing``."""

    __slots__ = ("index", "name", "cpus", "mems", "id", "state", "status", "ports", "labels", "image_id", "limits")

    def __init__(self, index: int, name: str, cpus: list[int], mems: list[int], id: str = "",
                 state: str = "missing", status: str = "missing", ports: list[str] | None = None,
                 labels: dict[str, str] | None = None, image_id: str = "", limits: dict | None = None):
        self.index = index
        self.name = name
        self.cpus = cpus
        self.mems = mems
        self.id = id  # full container id; "" when the container is gone
        self.state = state  # Docker's State (running, exited, dead, created, restarting, paused) or missing
        self.status = status  # Docker's Status text ("Up 3 minutes", "Exited (137) 2 seconds ago")
        self.ports: list[str] = [] if ports is None else ports  # as docker ps shows them
        self.labels: dict[str, str] = {} if labels is None else labels
        self.image_id = image_id  # the image its container runs (Docker's ImageID), "" when missing
        self.limits = limits  # its container's HostConfig limits as read (read_pins); None: not read

    @property
    def up(self) -> bool:
        return self.state in UP_STATES

    @property
    def short_id(self) -> str:
        return self.id[:12]


class Group(Record):
    """A group as found on the daemon (a :class:`~tesson.request.Record`)."""

    __slots__ = ("name", "labels", "spec", "shards", "others", "extra", "previous")

    def __init__(self, name: str, labels: dict, spec: Spec | None, shards: list[ShardState], others: list[Container],
                 extra: list[ShardState] | None = None, previous: dict[int, ShardState] | None = None):
        self.name = name
        self.labels = labels  # the group's labels (from its lowest shard, else any container)
        self.spec = spec  # None when the labels are not complete enough to rebuild the group
        self.shards = shards  # every index of the plan (missing ones included)
        self.others = others  # the group's non-shard containers (the balancer)
        self.extra: list[ShardState] = [] if extra is None else extra  # shard containers whose index is not in the plan
        # GROUP-INDEX.prev: a shard's previous container, kept by update until its successor is healthy
        self.previous: dict[int, ShardState] = {} if previous is None else previous

    @property
    def lock(self) -> Container | None:
        """``GROUP-lock`` while a scale or update runs (or after one died)."""
        found = self.others_in_role(L.ROLE_LOCK)
        return found[0] if found else None

    @property
    def change(self) -> dict | None:
        """What the lock says is under way: ``{"verb", "by", "host", "pid", "since", ...}``; None unlocked."""
        lock = self.lock
        if lock is None:
            return None
        try:
            doc = json.loads(lock.labels.get(L.CHANGE) or "{}")
        except ValueError:
            doc = {}
        return doc if isinstance(doc, dict) else {}

    @property
    def records(self) -> list[Container]:
        """The spec records (``GROUP-spec.GEN``), newest first."""
        return sorted(self.others_in_role(L.ROLE_SPEC), key=lambda c: -generation(c.labels))

    def outdated(self) -> list[int]:
        """The indexes of shards whose container was made from another image, command or config
        than the group's spec says (an update under way, stopped or undone halfway)."""
        return [s.index for s in self.shards if s.id and differs(s.labels, self.labels)]

    @property
    def image(self) -> str:
        return self.labels.get(L.IMAGE, "")

    @property
    def unit(self) -> str:
        return self.labels.get(L.UNIT, "")

    @property
    def near(self) -> list:
        """The run --near devices the group was placed by ([] for the whole machine)."""
        try:
            value = json.loads(self.labels.get(L.NEAR) or "[]")
        except ValueError:
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    @property
    def exclusive(self) -> str:
        """``packed`` or ``spread`` for a run --exclusive group, else ""."""
        return self.labels.get(L.EXCLUSIVE, "")

    def limits_of(self, index: int) -> dict:
        """Shard ``index``'s HostConfig limits ({} when none were set): as its container has them
        when they were read (a shard re-pinned live, whose 'auto' limits followed), else its labels'."""
        lims = self.spec.limits if self.spec is not None else []
        labelled = lims[index] if 0 <= index < len(lims) and isinstance(lims[index], dict) else {}
        found = next((s.limits for s in self.shards if s.index == index and s.limits is not None), None)
        return {k: found[k] for k in labelled if found.get(k)} if found is not None and labelled else labelled

    @property
    def size(self) -> int:
        return len(self.shards)

    @property
    def up(self) -> int:
        return sum(1 for s in self.shards if s.up)

    @property
    def health(self) -> str:
        """``running N/N``, ``stopped 0/N`` (every shard there, none up) or ``degraded k/N``."""
        n, k = self.size, self.up
        if k == n:
            return f"running {k}/{n}"
        if k == 0 and all(s.state in ("exited", "created") for s in self.shards):
            return f"stopped {k}/{n}"
        return f"degraded {k}/{n}"

    @property
    def status(self) -> str:
        """:attr:`health`, or during a change ``updating k/N`` (k shards on the new spec) or
        ``scaling A->B, running k/N``; shards left on another spec are counted after it."""
        change, health = self.change, self.health
        if change is not None:
            if change.get("verb") == "update":
                return f"updating {self.size - len(self.outdated())}/{self.size}, {health}"
            return f"scaling {change.get('from', '?')}->{change.get('to', self.size)}, {health}"
        stale = len(self.outdated())
        return f"{health}, {stale} not on the group's spec" if stale else health

    def container_ids(self) -> list[str]:
        ids = [s.id for s in self.shards if s.id] + [s.id for s in self.extra]
        return ids + [s.id for s in self.previous.values()] + [c.id for c in self.others]

    def others_in_role(self, role: str) -> list[Container]:
        return [c for c in self.others if c.role == role]


# What makes two containers of a group different versions of it (the per-shard placement aside).
VERSION_KEYS = (L.IMAGE, L.COMMAND, L.CONFIG)


def differs(labels: dict, spec_labels: dict) -> bool:
    """Whether a container made with ``labels`` runs another version than ``spec_labels`` describe."""
    return any((labels.get(k) or "") != (spec_labels.get(k) or "") for k in VERSION_KEYS)


def generation(labels: dict) -> int:
    try:
        return int(labels.get(L.GENERATION) or 0)
    except ValueError:
        return 0


def _from_containers(name: str, summaries: list[dict]) -> Group:
    shards_found: dict[int, ShardState] = {}
    others: list[Container] = []
    extra: list[ShardState] = []
    previous: dict[int, ShardState] = {}
    for c in map(Container, summaries):
        index = c.shard_index
        if index is None:
            others.append(c)
            continue
        labels = c.labels
        st = ShardState(
            index=index,
            name=c.name,
            cpus=cpulist.parse(labels.get(L.CPUS, "")),
            mems=cpulist.parse(labels.get(L.MEMS, "")),
            id=c.id,
            state=c.state,
            status=c.status,
            ports=c.ports,
            labels=labels,
            image_id=c.raw.get("ImageID", ""),
        )
        if c.name == names.previous_name(name, index) and index not in previous:
            previous[index] = st
            continue
        if index in shards_found:  # two containers claim one index: keep the running one
            keep, drop = (st, shards_found[index]) if st.up and not shards_found[index].up else (shards_found[index], st)
            shards_found[index] = keep
            extra.append(drop)
        else:
            shards_found[index] = st
    records = sorted((c for c in others if c.role == L.ROLE_SPEC), key=lambda c: -generation(c.labels))
    if records:  # a scale or update wrote the group's spec: the newest record is it
        source = records[0].labels
    elif shards_found:
        source = shards_found[min(shards_found)].labels
    elif previous:
        source = previous[min(previous)].labels
    else:
        source = others[0].labels
    labels = {k: v for k, v in source.items() if k.startswith(L.PREFIX) and k not in L.PER_SHARD}
    try:
        spec = Spec.from_labels(labels)
    except ValueError:
        spec = None
    shards: list[ShardState] = []
    if spec is not None:
        for planned in spec.shards:
            found = shards_found.pop(planned.index, None)
            shards.append(
                found
                or ShardState(
                    index=planned.index, name=names.shard_name(name, planned.index), cpus=list(planned.cpus), mems=list(planned.mems)
                )
            )
        extra.extend(shards_found.values())
    else:
        shards = [shards_found[i] for i in sorted(shards_found)]
    return Group(name=name, labels=labels, spec=spec, shards=shards, others=others, extra=extra, previous=previous)


def _read_pins(client: APIClient, st: ShardState) -> None:
    """Set a shard's CPUs, memory nodes and limits to what its container has now."""
    from tesson.quotas import KEYS

    try:
        host = client.inspect_container(st.id).get("HostConfig") or {}
    except Exception:  # gone since the listing: its labels are the best we know
        return
    st.cpus = cpulist.parse(host.get("CpusetCpus") or "")
    st.mems = cpulist.parse(host.get("CpusetMems") or "")
    st.limits = {k: int(host.get(k) or 0) for k in KEYS}


def _true_pins(client: APIClient, grp: Group) -> None:
    """A shard re-pinned live (``scale``) keeps the labels it was made with: for each shard whose
    labelled CPUs or memory nodes are not the plan's, read what its container has now."""
    if grp.spec is None:
        return
    for st, planned in zip(grp.shards, grp.spec.shards):
        if st.id and (st.cpus, st.mems) != (list(planned.cpus), list(planned.mems)):
            _read_pins(client, st)


def read_pins(client: APIClient, grp: Group) -> None:
    """Every shard's true pins and limits, read from its container (one inspect each): what a
    converge plans from. The shared pool re-pins shards live without a trace in their labels, so
    the labels alone cannot tell a re-pinned shard from one where it was made."""
    for st in grp.shards:
        if st.id and st.limits is None:
            _read_pins(client, st)


def list_groups(client: APIClient, name: str | None = None) -> list[Group]:
    """Every group on the daemon (or only ``name``), by name, from one container listing (and one
    inspect per shard re-pinned since it was made)."""
    containers = client.containers(all=True, filters={"label": [L.selector(L.GROUP, name)]})
    by_group: dict[str, list[dict]] = {}
    for c in containers:
        by_group.setdefault((c.get("Labels") or {}).get(L.GROUP, ""), []).append(c)
    groups = [_from_containers(g, cs) for g, cs in sorted(by_group.items()) if g]
    repinned = any(not g.exclusive for g in groups) and _exclusive_on_daemon(client, containers, name)
    for grp in groups:
        if repinned and not grp.exclusive:
            read_pins(client, grp)  # the pool may have moved its shards live, labels unchanged
        else:
            _true_pins(client, grp)
    return groups


def _exclusive_on_daemon(client: APIClient, listed: list[dict], name: str | None) -> bool:
    """Whether any exclusive group is on the daemon: while one is, the shared pool's shards may
    sit elsewhere than their labels say (tesson.sharing re-pins them live). The listing of every
    group tells; a listing of one group asks the daemon once more (one cheap listing)."""
    if name is None:
        return any(L.EXCLUSIVE in (c.get("Labels") or {}) for c in listed)
    return bool(client.containers(all=True, quiet=True, filters={"label": [L.EXCLUSIVE]}))


def find(client: APIClient, name: str) -> Group | None:
    groups = list_groups(client, name)
    return groups[0] if groups else None
