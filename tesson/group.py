"""A group as Docker sees it, rebuilt from container labels alone (tesson keeps no state).

Like docker-compose's project label, ``io.tesson.group`` ties a group's containers together;
``io.tesson.role`` tells shards from the frontend's containers (``lb``). Every container of a group
also carries the group's *spec* -- image, command, ports, config, unit, size and the whole plan --
so ``repair`` can recreate any vanished shard from whatever is left, and ``ps`` shows the group
even when some shards are gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tesson import cpulist

PREFIX = "io.tesson."
GROUP = PREFIX + "group"
ROLE = PREFIX + "role"
SHARD = PREFIX + "shard"
CPUS = PREFIX + "cpus"
MEMS = PREFIX + "mems"
UNIT = PREFIX + "unit"
SIZE = PREFIX + "size"
IMAGE = PREFIX + "image"
COMMAND = PREFIX + "command"  # JSON list; [] = the image's own
PORTS = PREFIX + "ports"  # JSON list of -p specs as typed
CONFIG = PREFIX + "config"  # JSON of the -c body as given ("" = none)
PLAN = PREFIX + "plan"  # JSON [[cpulist, memlist], ...] by shard index
FRONTEND = PREFIX + "frontend"
VERSION = PREFIX + "version"
RUN = PREFIX + "run"  # a fresh id per run/repair: what one invocation made, for its cleanup
NEAR = PREFIX + "near"  # JSON list of the run --near devices (absent: placed on the whole machine)

PER_SHARD = (ROLE, SHARD, CPUS, MEMS, RUN)  # labels that differ between a group's containers

UP_STATES = ("running",)


@dataclass(frozen=True)
class PlannedShard:
    """Stand-in with placement.Shard's fields, for plans rebuilt from labels."""

    index: int
    cpus: tuple
    mems: tuple


def make_shard(index: int, cpus, mems):
    try:
        from tesson.placement import Shard
    except ImportError:
        Shard = PlannedShard
    return Shard(index=index, cpus=tuple(cpus), mems=tuple(mems))


@dataclass
class Spec:
    """Everything needed to (re)create any shard of a group."""

    group: str
    image: str
    command: list
    port_specs: list
    config: dict
    unit: str
    shards: list  # the plan: Shard(index, cpus, mems), by index
    frontend: str = "none"
    near: list = field(default_factory=list)  # run --near devices, as given

    @property
    def size(self) -> int:
        return len(self.shards)

    def labels(self) -> dict:
        """The labels every container of the group carries (no per-shard ones)."""
        from tesson import __version__

        near = {NEAR: json.dumps(list(self.near))} if self.near else {}
        return {
            **near,
            GROUP: self.group,
            IMAGE: self.image,
            COMMAND: json.dumps(list(self.command)),
            PORTS: json.dumps(list(self.port_specs)),
            CONFIG: json.dumps(self.config, separators=(",", ":"), sort_keys=True) if self.config else "",
            UNIT: self.unit,
            SIZE: str(self.size),
            PLAN: json.dumps([[cpulist.format(s.cpus), cpulist.format(s.mems)] for s in self.shards]),
            FRONTEND: self.frontend,
            VERSION: __version__,
        }

    @classmethod
    def from_labels(cls, labels: dict) -> "Spec":
        """Inverse of :meth:`labels`; ValueError if the labels are not tesson's."""
        try:
            plan = json.loads(labels[PLAN])
            shards = [make_shard(i, cpulist.parse(c), cpulist.parse(m)) for i, (c, m) in enumerate(plan)]
            return cls(
                group=labels[GROUP],
                image=labels[IMAGE],
                command=json.loads(labels.get(COMMAND) or "[]"),
                port_specs=json.loads(labels.get(PORTS) or "[]"),
                config=json.loads(labels[CONFIG]) if labels.get(CONFIG) else {},
                unit=labels.get(UNIT, ""),
                shards=shards,
                frontend=labels.get(FRONTEND) or "none",
                near=json.loads(labels.get(NEAR) or "[]"),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"labels do not describe a tesson group ({type(e).__name__}: {e})") from None


def _ports_of(summary: dict) -> list[str]:
    out = []
    for p in summary.get("Ports") or []:
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}")
        else:
            out.append(f"{p['PrivatePort']}/{p.get('Type', 'tcp')}")
    return sorted(set(out), key=lambda s: (s.split("->")[-1], s))


@dataclass
class ShardState:
    index: int
    name: str
    cpus: list
    mems: list
    id: str = ""  # full container id; "" when the container is gone
    state: str = "missing"  # Docker's State (running, exited, dead, created, restarting, paused) or missing
    status: str = "missing"  # Docker's Status text ("Up 3 minutes", "Exited (137) 2 seconds ago")
    ports: list = field(default_factory=list)
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
    shards: list  # ShardState for every index of the plan (missing ones included)
    others: list  # Docker summaries of the group's non-shard containers (the balancer)
    extra: list = field(default_factory=list)  # shard containers whose index is not in the plan

    @property
    def image(self) -> str:
        return self.labels.get(IMAGE, "")

    @property
    def unit(self) -> str:
        return self.labels.get(UNIT, "")

    @property
    def near(self) -> list:
        """The run --near devices the group was placed by ([] for the whole machine)."""
        try:
            value = json.loads(self.labels.get(NEAR) or "[]")
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
        return ids + [c["Id"] for c in self.others]


def _from_containers(name: str, containers: list[dict]) -> Group:
    shards_found: dict[int, ShardState] = {}
    others: list[dict] = []
    extra: list[ShardState] = []
    for c in containers:
        labels = c.get("Labels") or {}
        if labels.get(ROLE) != "shard":
            others.append(c)
            continue
        try:
            index = int(labels.get(SHARD, ""))
        except ValueError:
            others.append(c)
            continue
        st = ShardState(
            index=index,
            name=(c.get("Names") or ["/?"])[0].lstrip("/"),
            cpus=cpulist.parse(labels.get(CPUS, "")),
            mems=cpulist.parse(labels.get(MEMS, "")),
            id=c["Id"],
            state=c.get("State", ""),
            status=c.get("Status", ""),
            ports=_ports_of(c),
            labels=labels,
        )
        if index in shards_found:  # two containers claim one index: keep the running one
            keep, drop = (st, shards_found[index]) if st.up and not shards_found[index].up else (shards_found[index], st)
            shards_found[index] = keep
            extra.append(drop)
        else:
            shards_found[index] = st
    source = shards_found[min(shards_found)].labels if shards_found else (others[0].get("Labels") or {})
    labels = {k: v for k, v in source.items() if k.startswith(PREFIX) and k not in PER_SHARD}
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
                    index=planned.index, name=f"{name}-{planned.index}", cpus=list(planned.cpus), mems=list(planned.mems)
                )
            )
        extra.extend(shards_found.values())
    else:
        shards = [shards_found[i] for i in sorted(shards_found)]
    return Group(name=name, labels=labels, spec=spec, shards=shards, others=others, extra=extra)


def list_groups(client, name: str | None = None) -> list[Group]:
    """Every group on the daemon (or only ``name``), by name, from one container listing."""
    filters = {"label": [f"{GROUP}={name}" if name else GROUP]}
    containers = client.containers(all=True, filters=filters)
    by_group: dict[str, list[dict]] = {}
    for c in containers:
        by_group.setdefault((c.get("Labels") or {}).get(GROUP, ""), []).append(c)
    return [_from_containers(g, cs) for g, cs in sorted(by_group.items()) if g]


def find(client, name: str) -> Group | None:
    groups = list_groups(client, name)
    return groups[0] if groups else None
