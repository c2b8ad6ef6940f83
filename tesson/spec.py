"""A group's *spec*: everything needed to (re)create any of its shards, and its labels.

Every container of a group carries the spec as labels (the vocabulary is :mod:`tesson.labels`), so
``repair`` can recreate any vanished shard from whatever is left; :meth:`Spec.labels` writes them
and :meth:`Spec.from_labels` reads them back (:mod:`tesson.group` rebuilds a whole group from its
containers).
"""

from __future__ import annotations

import json

from tesson import cpulist
from tesson import labels as L
from tesson.request import Record

TYPE_CHECKING = False  # typing is not imported on the read-only verbs' path
if TYPE_CHECKING:
    from typing import Iterable

    from tesson.placement import Shard


def make_shard(index: int, cpus: Iterable[int], mems: Iterable[int]) -> Shard:
    from tesson.placement import Shard

    return Shard(index=index, cpus=tuple(cpus), mems=tuple(mems))


class Spec(Record):
    """Everything needed to (re)create any shard of a group. A :class:`~tesson.request.Record`
    (compared by its fields, ``_replace`` for a changed copy); a list or dict field given as None
    (or not given) is a new empty one."""

    __slots__ = ("group", "image", "command", "port_specs", "config", "unit", "shards", "frontend", "near",
                 "exclusive", "restrict", "limits", "machine", "config_digest", "config_fields", "no_isolated",
                 "limits_auto")

    def __init__(self, group: str, image: str, command: list[str], port_specs: list[str], config: dict | None,
                 unit: str, shards: list[Shard], frontend: str = "none", near: list | None = None,
                 exclusive: str = "", restrict: str | None = None, limits: list | None = None, machine: str = "",
                 config_digest: str = "", config_fields: list | None = None, no_isolated: bool = False,
                 limits_auto: list | None = None):
        self.group = group
        self.image = image
        self.command = command
        self.port_specs = port_specs  # the -p specs as typed
        self.config = config  # the -c body; None when rebuilt from labels (config.recover reads it back)
        self.unit = unit
        self.shards = shards  # the plan, by index
        self.frontend = frontend
        self.near: list = [] if near is None else near  # run --near devices, as given
        self.exclusive = exclusive  # run --exclusive: "packed" or "spread"; "": a shared-pool group
        self.restrict = restrict  # the cpulist the group may use (--cpus AND --near); None: all allowed
        self.limits: list = [] if limits is None else limits  # each shard's HostConfig limits, by index ([] = none)
        self.machine = machine  # tesson.holdings.machine_id of the topology planned on ("" = unknown)
        self.config_digest = config_digest  # config.digest of the body ("" = no config)
        # config.fields of the body: names, no values
        self.config_fields: list = [] if config_fields is None else config_fields
        self.no_isolated = no_isolated  # run --no-isolated: the kernel's isolated CPUs are not the group's
        # the limits' keys computed from the CPUs (quotas.auto_keys)
        self.limits_auto: list = [] if limits_auto is None else limits_auto
        if config:  # the digest and field names follow the body when there is one
            from tesson import config as C

            self.config_digest, self.config_fields = C.digest(config), C.fields(config)
        elif config is not None:  # no config: what config.digest and config.fields say of {}
            self.config_digest, self.config_fields = "", []

    @property
    def size(self) -> int:
        return len(self.shards)

    def labels(self) -> dict:
        """The labels every container of the group carries (no per-shard ones)."""
        from tesson import __version__

        near = {L.NEAR: json.dumps(list(self.near))} if self.near else {}
        if self.exclusive:
            near[L.EXCLUSIVE] = self.exclusive
        if self.restrict is not None:
            near[L.CPUS_RESTRICT] = self.restrict
        if self.no_isolated:
            near[L.NO_ISOLATED] = "1"
        if self.machine:
            near[L.MACHINE] = self.machine
        if any(self.limits):
            near[L.LIMITS] = json.dumps(list(self.limits), separators=(",", ":"))
        if self.limits_auto:
            near[L.LIMITS_AUTO] = json.dumps(list(self.limits_auto))
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
                exclusive=labels.get(L.EXCLUSIVE, ""),
                restrict=labels.get(L.CPUS_RESTRICT),
                no_isolated=L.no_isolated(labels),
                limits_auto=L.limits_auto(labels),
                limits=json.loads(labels.get(L.LIMITS) or "[]"),
                machine=labels.get(L.MACHINE, ""),
                config_digest=text if known is None else "",
                config_fields=json.loads(labels.get(L.CONFIG_FIELDS) or "[]") if known is None else [],
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"labels do not describe a tesson group ({type(e).__name__}: {e})") from None
