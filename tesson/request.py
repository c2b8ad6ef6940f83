"""What ``tesson run`` was asked to do, as typed, immutable values made once at the command line.

``commands/run.py`` turns argparse's Namespace into a :class:`RunRequest` (or, for ``--dry-run``,
only a :class:`Placement`); below that edge nothing reads the Namespace. The ``-p`` specs are
parsed once (:attr:`RunRequest.ports`), the unit is normalised once, and the topology read to
make the plan travels with it (the nginx frontend checks ``--lb-cpus`` against it).

They are plain classes with ``__slots__`` (:class:`Value`), not frozen dataclasses: every ``run
--dry-run`` makes them, and ``dataclasses`` imports ``inspect`` (with ``ast``, ``dis``, ``tokenize``...)
and compiles each class's methods, which cost that command more than its whole plan (a
``typing.NamedTuple`` still costs ``typing`` and the compiler). Their fields are ``Final``: mypy
refuses an assignment; change one with ``_replace`` (as ``dataclasses.replace``).

:class:`Record`, its mutable sibling, is the home of the same behaviour for the records the read
verbs build (``tesson.group``'s ``Spec``, ``ShardState`` and ``Group``, ``frontend.Context``), and
``Value`` that of their immutable ones (``Container``, ``Port``, ``psformat``'s): one place for
equality, repr and ``_replace``, none of them a dataclass.
"""

from __future__ import annotations

from tesson.errors import UsageError

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    from typing import Any, Final, Self

    from tesson.holdings import Move
    from tesson.placement import Shard
    from tesson.ports import Port
    from tesson.quotas import Quotas
    from tesson.topology import Topology


class Record:
    """A record whose fields are its class's ``__slots__`` and its ``__init__``'s parameters (the
    same names, in the same order): compared by its fields, shown with them, copied with changes by
    :meth:`_replace` (which calls ``__init__`` again, as ``dataclasses.replace`` does). Mutable and
    unhashable, as a dataclass that is not frozen; :class:`Value` is the immutable one.

    A field with a mutable default (a list, a dict) takes ``None`` for "a new empty one" in its
    class's ``__init__``: one default shared by every instance would be a bug.
    """

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def _replace(self, **changes: Any) -> Self:
        return type(self)(**{**{name: getattr(self, name) for name in self.__slots__}, **changes})

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    # No __hash__: a class that defines __eq__ alone gets __hash__ = None, so a Record is unhashable
    # (as a dataclass that is not frozen); an explicit None here would be a type mypy refuses to let
    # Value override.

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Value(Record):
    """A :class:`Record` whose fields are ``Final`` (mypy refuses an assignment) and which is
    hashed by its fields: a frozen dataclass's behaviour."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._fields())


class FrontendOptions(Value):
    """The front door asked for: its kind and every option a frontend reads."""

    __slots__ = ("kind", "lb", "lb_method", "lb_image", "lb_cpus", "gorb_uri", "gorb_method", "gorb_forward",
                 "macvlan_range")

    def __init__(self, kind: str, lb: str | None = None, lb_method: str | None = None, lb_image: str | None = None,
                 lb_cpus: str | None = None, gorb_uri: str | None = None, gorb_method: str | None = None,
                 gorb_forward: str | None = None, macvlan_range: str | None = None):
        self.kind: Final = kind  # "auto" (kernel where the host allows it, else nginx), "kernel", "nginx", "none" or "gorb"
        self.lb: Final = lb  # --lb as given (None: not given)
        self.lb_method: Final = lb_method
        self.lb_image: Final = lb_image
        self.lb_cpus: Final = lb_cpus  # a cpulist, as typed
        self.gorb_uri: Final = gorb_uri  # --gorb / GORB_URI, as typed
        self.gorb_method: Final = gorb_method
        self.gorb_forward: Final = gorb_forward  # --gorb-forward: nat, dr or tunnel (None: not given = nat)
        self.macvlan_range: Final = macvlan_range  # --macvlan-range CIDR (dr)

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


class Placement(Value):
    """The plan of a group: what ``run --dry-run`` prints and ``run`` starts."""

    __slots__ = ("group", "image", "unit", "topology", "shards", "near", "exclusive", "restrict", "no_isolated",
                 "size_asked", "quotas", "limits", "limits_auto", "repins", "warnings")

    def __init__(self, group: str, image: str, unit: str, topology: Topology, shards: tuple[Shard, ...],
                 near: tuple[str, ...] = (), exclusive: str = "", restrict: int | None = None,
                 no_isolated: bool = False, size_asked: int | None = None, quotas: Quotas | None = None,
                 limits: tuple[dict, ...] = (), limits_auto: tuple[str, ...] = (), repins: tuple[Move, ...] = (),
                 warnings: tuple[str, ...] = ()):
        self.group: Final = group
        self.image: Final = image
        self.unit: Final = unit  # canonical: pu, core, l3, numa or package
        self.topology: Final = topology  # as read under the fsroot, for the frontend's checks
        self.shards: Final = shards
        self.near: Final = near  # run --near devices as typed (() = the whole machine)
        self.exclusive: Final = exclusive  # run --exclusive: "packed" or "spread" (--spread); "": the shared pool
        self.restrict: Final = restrict  # the CPUs the group may use (--cpus AND --near's), a mask; None: all
        self.no_isolated: Final = no_isolated  # --no-isolated: the kernel's isolated CPUs (topology.isolated) are not the group's
        self.size_asked: Final = size_asked  # -n as given (None: every free unit)
        self.quotas: Final = quotas  # --memory, --memory-reservation, --cpu-shares (None: none asked)
        self.limits: Final = limits  # each shard's HostConfig limits, by index (() = none)
        self.limits_auto: Final = limits_auto  # the limits' keys computed from each shard's CPUs (quotas.auto_keys)
        self.repins: Final = repins  # the live re-pins of shared groups this plan needs (--exclusive)
        self.warnings: Final = warnings  # lines for stderr (e.g. a foreign group on the CPUs taken)


class RunRequest(Value):
    """Everything ``run`` needs, checked: the plan, the shards' command and config, the ``-p``
    ports and the frontend's options."""

    __slots__ = ("placement", "command", "port_specs", "ports", "config", "frontend", "pull")

    def __init__(self, placement: Placement, command: tuple[str, ...], port_specs: tuple[str, ...],
                 ports: tuple[Port, ...], config: dict, frontend: FrontendOptions, pull: str = "missing"):
        self.placement: Final = placement
        self.command: Final = command  # () = the image's own
        self.port_specs: Final = port_specs  # the -p specs as typed (kept in the labels)
        self.ports: Final = ports  # the same, parsed
        self.config: Final = config  # the -c body as loaded ({} = none); never changed after loading
        self.frontend: Final = frontend
        self.pull: Final = pull  # --pull: missing, always or never (as docker run --pull)

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
