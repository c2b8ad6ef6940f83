"""What ``tesson run`` was asked to do, as typed, immutable values made once at the command line.

``commands/run.py`` turns argparse's Namespace into a :class:`RunRequest` (or, for ``--dry-run``,
only a :class:`Placement`); below that edge nothing reads the Namespace. The ``-p`` specs are
parsed once (:attr:`RunRequest.ports`), the unit is normalised once, and the topology read to
make the plan travels with it (the nginx frontend checks ``--lb-cpus`` against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tesson.errors import UsageError

if TYPE_CHECKING:
    from tesson.holdings import Move
    from tesson.placement import Shard
    from tesson.ports import Port
    from tesson.quotas import Quotas
    from tesson.topology import Topology


@dataclass(frozen=True)
class FrontendOptions:
    """The front door asked for: its kind and every option a frontend reads."""

    kind: str  # "auto" (kernel where the host allows it, else nginx), "kernel", "nginx", "none" or "gorb"
    lb: str | None = None  # --lb as given (None: not given)
    lb_method: str | None = None
    lb_image: str | None = None
    lb_cpus: str | None = None  # a cpulist, as typed
    gorb_uri: str | None = None  # --gorb / GORB_URI, as typed
    gorb_method: str | None = None
    gorb_forward: str | None = None  # --gorb-forward: nat, dr or tunnel (None: not given = nat)
    macvlan_range: str | None = None  # --macvlan-range CIDR (dr)

    @classmethod
    def choose(
        cls,
        lb: str | None = None,
        lb_method: str | None = None,
        lb_image: str | None = None,
        lb_cpus: str | None = None,
        gorb_uri: str | None = None,
        gorb_method: str | None = None,
        gorb_forward: str | None = None,
        macvlan_range: str | None = None,
    ) -> FrontendOptions:
        """The kind follows from the options: a Gorb URI means gorb, else ``--lb`` (default auto).
        ``--lb`` and a Gorb URI exclude each other, and ``--gorb-forward``/``--macvlan-range``
        need Gorb (UsageError)."""
        if gorb_uri:
            if lb in ("auto", "kernel", "nginx", "none"):
                raise UsageError(
                    f"--lb {lb} and --gorb (or GORB_URI) exclude each other: Gorb is the group's balancer "
                    f"(drop --lb {lb}, or --gorb and GORB_URI)"
                )
            kind = "gorb"
        else:
            if gorb_forward and gorb_forward != "nat":
                raise UsageError(f"--gorb-forward {gorb_forward} needs --gorb URI (or GORB_URI): it is how Gorb's IPVS "
                                 "reaches the shards")
            if macvlan_range:
                raise UsageError("--macvlan-range needs --gorb URI --gorb-forward dr")
            kind = lb or "auto"
        return cls(kind, lb, lb_method, lb_image, lb_cpus, gorb_uri, gorb_method, gorb_forward, macvlan_range)

    def lb_flags_given(self) -> list[str]:
        """The ``--lb-*`` options given, as flags (for "ignored with ..." warnings)."""
        given = (("--lb-method", self.lb_method), ("--lb-image", self.lb_image), ("--lb-cpus", self.lb_cpus))
        return [flag for flag, value in given if value]


@dataclass(frozen=True)
class Placement:
    """The plan of a group: what ``run --dry-run`` prints and ``run`` starts."""

    group: str
    image: str
    unit: str  # canonical: pu, core, l3, numa or package
    topology: Topology  # as read under the fsroot, for the frontend's checks
    shards: tuple[Shard, ...]
    near: tuple[str, ...] = ()  # run --near devices as typed (() = the whole machine)
    exclusive: str = ""  # run --exclusive: "packed" or "spread" (--spread); "": the shared pool
    restrict: int | None = None  # the CPUs the group may use (--cpus AND --near's), a mask; None: all
    no_isolated: bool = False  # --no-isolated: the kernel's isolated CPUs (topology.isolated) are not the group's
    size_asked: int | None = None  # -n as given (None: every free unit)
    quotas: Quotas | None = None  # --memory, --memory-reservation, --cpu-shares (None: none asked)
    limits: tuple[dict, ...] = ()  # each shard's HostConfig limits, by index (() = none)
    limits_auto: tuple[str, ...] = ()  # the limits' keys computed from each shard's CPUs (quotas.auto_keys)
    repins: tuple[Move, ...] = ()  # the live re-pins of shared groups this plan needs (--exclusive)
    warnings: tuple[str, ...] = ()  # lines for stderr (e.g. a foreign group on the CPUs taken)


@dataclass(frozen=True)
class RunRequest:
    """Everything ``run`` needs, checked: the plan, the shards' command and config, the ``-p``
    ports and the frontend's options."""

    placement: Placement
    command: tuple[str, ...]  # [] = the image's own
    port_specs: tuple[str, ...]  # the -p specs as typed (kept in the labels)
    ports: tuple[Port, ...]  # the same, parsed
    config: dict  # the -c body as loaded ({} = none); never changed after loading
    frontend: FrontendOptions
    pull: str = "missing"  # --pull: missing, always or never (as docker run --pull)

    @property
    def group(self) -> str:
        return self.placement.group

    @property
    def image(self) -> str:
        return self.placement.image

    @property
    def unit(self) -> str:
        return self.placement.unit

    @property
    def topology(self) -> Topology:
        return self.placement.topology

    @property
    def shards(self) -> tuple[Shard, ...]:
        return self.placement.shards

    @property
    def limits(self) -> tuple[dict, ...]:
        return self.placement.limits
