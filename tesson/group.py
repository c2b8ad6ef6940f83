"""A group as Docker sees it, rebuilt from container labels alone (tesson keeps no state).

``io.tesson.group`` ties a group's containers together and ``io.tesson.role`` tells shards from the
frontend's containers (the vocabulary is :mod:`tesson.labels`). Every container of a group also
carries the group's *spec*, so ``repair`` can recreate any vanished shard from whatever is left,
and ``ps`` shows the group even when some shards are gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from tesson import cpulist, names
from tesson import labels as L
from tesson.container import Container

if TYPE_CHECKING:
    from tesson.placement import Shard

UP_STATES = ("running",)


def make_shard(index: int, cpus: Iterable[int], mems: Iterable[int]) -> Shard:
    from tesson.placement import Shard

    return Shard(index=index, cpus=tuple(cpus), mems=tuple(mems))


@dataclass
class Spec:
    """Everything needed to (re)create any shard of a group."""

    group: str
    image: str
    command: list[str]
    port_specs: list[str]  # the -p specs as typed
    config: dict | None  # the -c body; None when rebuilt from labels (config.recover reads it back)
    unit: str
    shards: list[Shard]  # the plan, by index
    frontend: str = "none"
    near: list = field(default_factory=list)  # run --near devices, as given
    config_digest: str = ""  # config.digest of the body ("" = no config)
    config_fields: list = field(default_factory=list)  # config.fields of the body: names, no values

    def __post_init__(self) -> None:
        if self.config is not None:
            from tesson import config as C

            self.config_digest, self.config_fields = C.digest(self.config), C.fields(self.config)

    @property
    def size(self) -> int:
        return len(self.shards)

    def labels(self) -> dict:
        """The labels every container of the group carries (no per-shard ones)."""
        from tesson import __version__

        near = {L.NEAR: json.dumps(list(self.near))} if self.near else {}
        return {
            **near,
            L.GROUP: self.group,
            L.IMAGE: self.image,
            L.COMMAND: json.dumps(list(self.command)),
            L.PORTS: json.dumps(list(self.port_specs)),
            L.CONFIG: self.config_digest,
            L.CONFIG_FIELDS: json.dumps(self.config_fields) if self.config_digest else "",
            L.UNIT: self.unit,
            L.SIZE: str(self.size),
            L.PLAN: json.dumps([[cpulist.format(s.cpus), cpulist.format(s.mems)] for s in self.shards]),
            L.FRONTEND: self.frontend,
            L.VERSION: __version__,
        }

    @classmethod
    def from_labels(cls, labels: dict) -> "Spec":
        """Inverse of :meth:`labels` (the config's values excepted: ``config`` is None unless there
        is no config, or the labels are an older tesson's, which held the whole body);
        ValueError if the labels are not tesson's."""
        try:
            plan = json.loads(labels[L.PLAN])
            text = labels.get(L.CONFIG) or ""
            known = {} if not text else json.loads(text) if text.startswith("{") else None
            shards = [make_shard(i, cpulist.parse(c), cpulist.parse(m)) for i, (c, m) in enumerate(plan)]
            return cls(
                group=labels[L.GROUP],
                image=labels[L.IMAGE],
                command=json.loads(labels.get(L.COMMAND) or "[]"),
                port_specs=json.loads(labels.get(L.PORTS) or "[]"),
                config=known,
                unit=labels.get(L.UNIT, ""),
                shards=shards,
                frontend=labels.get(L.FRONTEND) or "none",
                near=json.loads(labels.get(L.NEAR) or "[]"),
                config_digest=text if known is None else "",
                config_fields=json.loads(labels.get(L.CONFIG_FIELDS) or "[]") if known is None else [],
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"labels do not describe a tesson group ({type(e).__name__}: {e})") from None


@dataclass
class ShardState:
    """One shard of a group as found: its container's state, or ``missing``."""

    index: int
    name: str
    cpus: list[int]
    mems: list[int]
    id: str = ""  # full container id; "" when the container is gone
    state: str = "missing"  # Docker's State (running, exited, dead, created, restarting, paused) or missing
    status: str = "missing"  # Docker's Status text ("Up 3 minutes", "Exited (137) 2 seconds ago")
    ports: list[str] = field(default_factory=list)  # as docker ps shows them
    labels: dict = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.state in UP_STATES

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass
class Group:
    name: str
    labels: dict  # the group's labels (from its lowest shard, else any container)
    spec: Spec | None  # None when the labels are not complete enough to rebuild the group
    shards: list[ShardState]  # every index of the plan (missing ones included)
    others: list[Container]  # the group's non-shard containers (the balancer)
    extra: list[ShardState] = field(default_factory=list)  # shard containers whose index is not in the plan

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
    def size(self) -> int:
        return len(self.shards)

    @property
    def up(self) -> int:
        return sum(1 for s in self.shards if s.up)

    @property
    def status(self) -> str:
        """``running N/N``, ``stopped 0/N`` (every shard there, none up) or ``degraded k/N``."""
        n, k = self.size, self.up
        if k == n:
            return f"running {k}/{n}"
        if k == 0 and all(s.state in ("exited", "created") for s in self.shards):
            return f"stopped {k}/{n}"
        return f"degraded {k}/{n}"

    def container_ids(self) -> list[str]:
        ids = [s.id for s in self.shards if s.id] + [s.id for s in self.extra]
        return ids + [c.id for c in self.others]

    def others_in_role(self, role: str) -> list[Container]:
        return [c for c in self.others if c.role == role]


def _from_containers(name: str, summaries: list[dict]) -> Group:
    shards_found: dict[int, ShardState] = {}
    others: list[Container] = []
    extra: list[ShardState] = []
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
        )
        if index in shards_found:  # two containers claim one index: keep the running one
            keep, drop = (st, shards_found[index]) if st.up and not shards_found[index].up else (shards_found[index], st)
            shards_found[index] = keep
            extra.append(drop)
        else:
            shards_found[index] = st
    source = shards_found[min(shards_found)].labels if shards_found else others[0].labels
    labels = {k: v for k, v in source.items() if k.startswith(L.PREFIX) and k not in L.PER_SHARD}
    try:
        spec = Spec.from_labels(labels)
    except ValueError:
        spec = None
    shards: list[ShardState] = []
    if spec is not None:
        for planned in spec.shards:
            st = shards_found.pop(planned.index, None)
            shards.append(
                st
                or ShardState(
                    index=planned.index, name=names.shard_name(name, planned.index), cpus=list(planned.cpus), mems=list(planned.mems)
                )
            )
        extra.extend(shards_found.values())
    else:
        shards = [shards_found[i] for i in sorted(shards_found)]
    return Group(name=name, labels=labels, spec=spec, shards=shards, others=others, extra=extra)


def list_groups(client, name: str | None = None) -> list[Group]:
    """Every group on the daemon (or only ``name``), by name, from one container listing."""
    containers = client.containers(all=True, filters={"label": [L.selector(L.GROUP, name)]})
    by_group: dict[str, list[dict]] = {}
    for c in containers:
        by_group.setdefault((c.get("Labels") or {}).get(L.GROUP, ""), []).append(c)
    return [_from_containers(g, cs) for g, cs in sorted(by_group.items()) if g]


def find(client, name: str) -> Group | None:
    groups = list_groups(client, name)
    return groups[0] if groups else None
