"""Frontends: what stands in front of a group's shards, plugged into the runtime.

A frontend is one of:

- ``none``  (``--lb none``): each shard publishes its ``-p`` ports itself, on ephemeral host ports
  or the given binding (the original tool's behaviour without Gorb). See ``none.py``.
- ``kernel`` (``--lb kernel``; ``--lb auto``, the default, picks it where the daemon's host allows
  it, else nginx): nftables DNAT to the shards, kept true by an agent container. See ``kernel.py``.
- ``nginx`` (``--lb nginx``): an embedded balancer container ``GROUP-lb`` on a network
  ``tesson-GROUP``; the shards publish nothing. See ``nginx.py``.
- ``gorb``  (global ``--gorb URI`` / env ``GORB_URI``): shards publish like ``none``, and the group's
  services and backends are registered with Gorb. See ``gorb.py``.

Each kind lives in ``tesson/frontend/KIND.py``, which defines a subclass of :class:`Frontend` and
names it ``FRONTEND`` (``FRONTEND = NginxFrontend``). The runtime calls it at each step:

``run``::

    fe = frontend.select(req)               # from_request: check the options, no daemon call (UsageError)
    ctx = Context.for_run(req, client, fe)  # labels: the spec's | fe.labels(), on every container
    fe.before_shards(ctx)                   # e.g. make the network; ctx.undo.add(...) what it made
    for each shard: fe.shape_shard(ctx, shard, body)   # then create (shard 0 first: it claims the name)
    ...start every shard; ~0.5 s after the last start, inspect them all into ctx.started[index];
    a shard not running, restarting or restarted by then fails the run (the frontend never sees it)...
    fe.after_start(ctx, indexes)            # every shard: set up inside its new network namespace
    fe.after_shards(ctx)                    # e.g. make + start the lb, or register with Gorb
    # any exception above -> ctx.undo.rollback(): everything recorded is undone, newest first

``stop``:   ``fe.before_stop(ctx)``; every container of the group (shards and frontend containers
            labelled with the group) is stopped, or removed with ``--purge``; ``fe.after_stop(ctx)``.
``repair``: dead or vanished shards are recreated (``shape_shard`` again) and started,
            ``fe.after_start`` for those that stayed up, then ``fe.repair(ctx, recreated)``
            (always, also when no shard needed it or some could not be repaired: it gets those
            that were). An exception it raises becomes one line; the repaired shards stay.
``ps``:     ``fe.describe(ctx)`` -> the ``"frontend"`` JSON object and the table's ``Frontend:`` line.

``scale`` and ``update`` (and ``repair`` after an interrupted one) change a *live* group through
one converge executor (:mod:`tesson.runtime.converge`), which tells the frontend which shards go
out of the front door and which come in, one set of shard indexes at a time::

    fe.remove_backends(ctx, [3])   # no NEW connection may go to shard 3 from now on; the open ones
                                   # may finish (the runtime now drains it: waits up to
                                   # --drain-timeout for its connections to end, then stops it)
    fe.forget_backends(ctx, [3])   # shard 3's container is stopped (and removed, or kept aside as
                                   # GROUP-3.prev by update): drop whatever still names it; 3 is
                                   # still in ctx.draining (its successor, if any, is not in yet)
    fe.after_start(ctx, [3])       # shard 3 was (re)started by this command: a new network namespace
    fe.add_backends(ctx, [3])      # shard 3 (new, a successor, or the previous version put back)
                                   # is up and healthy: send it connections; ctx.started[3] is its
                                   # inspect (published ports, addresses)
    ...and at the end fe.repair(ctx, brought_back) as ``repair`` calls it (bring everything in line).

A ``scale`` up calls ``fe.hold_backends(ctx, [4, 5])`` before it creates shards 4 and 5 (they are
in ``ctx.draining`` until their ``add_backends``): a door that takes running shards in by itself
(the kernel agent follows the daemon's events) keeps them out until they are found healthy; if
it cannot, the scale is refused before anything is made. ``add_backends`` may take a while: the
kernel door's returns once the shards accept connections (DNAT cannot retry another shard). ``forget_backends`` is called only for
shards really stopped (one whose stop failed is still in the door's keeping); ``add_backends``
must be idempotent (a shard already in stays in).

While a shard is out (between ``remove_backends`` or ``hold_backends`` and its ``add_backends``,
or its removal) its index is in ``ctx.draining``: any hook that rebuilds the whole set of
backends (an nginx reload for another shard, say) must leave those out. Hooks are called from
one thread, in this order for a shard; several indexes in one call come from ``update --parallel
K`` or a scale. ``run`` never calls them. How each kind does it (an nginx graceful reload,
Gorb's weight 0, the kernel agent's held-out set) is in its hooks' docstrings. A hook that fails
raises TessonError: the executor then stops the change where it is, puts back what it took out,
and reports.

In ``stop``, ``repair`` and ``ps`` the frontend is rebuilt from the group's labels alone
(:func:`for_group`), so everything it needs later (Gorb URI, lb settings) must be in the labels
its :meth:`Frontend.labels` returns at ``run``; the context is :meth:`Context.for_group`. With
``stop --purge`` the runtime removes the group's labelled networks after every frontend.
"""

from __future__ import annotations

import importlib

from tesson import labels as L
from tesson import log, names
from tesson.errors import TessonError
from tesson.frontend.undo import Undo  # the protocol's undo log, in its own module
from tesson.request import Record

TYPE_CHECKING = False  # typing is not imported on ps's path
if TYPE_CHECKING:
    from typing import Any

    from tesson.group import Group
    from tesson.placement import Shard
    from tesson.ports import Port
    from tesson.request import RunRequest
    from tesson.topology import Topology

KINDS = ("nginx", "none", "gorb", "kernel")


class NotAdmitted(TessonError):
    """``add_backends`` could not take shards ``indexes`` in, for a reason that is theirs (the kernel
    door admits a shard only once it accepts connections, within a bound): a rolling update puts
    their previous versions back instead of keeping them."""

    def __init__(self, message: str, indexes: list[int]):
        super().__init__(message)
        self.indexes = list(indexes)


class Context(Record):
    """What the runtime hands to every frontend hook; made by :meth:`for_run` (a new group) or
    :meth:`for_group` (a group found on the daemon) and nowhere else.

    ``docker`` is docker-py's low-level ``APIClient`` (raw Engine API bodies, dict answers).
    ``ports`` are the parsed ``-p`` specs (one :class:`tesson.ports.Port` per container port).
    ``shards`` is the plan: every shard of the group, also in ``repair``. ``started`` maps a shard
    index to its container's inspect (after start: its ``NetworkSettings.Ports`` has the published
    host ports) for the shards made by this run or repair. ``state`` is the group as found on the
    daemon in ``stop``/``repair``/``ps``, ``None`` in ``run``; ``topology`` is the one ``run``
    read, ``None`` elsewhere. ``labels`` are the labels every container of the group carries.
    A :class:`~tesson.request.Record`: a list, dict, set or Undo left None is a new empty one.
    """

    __slots__ = ("group", "docker", "image", "command", "ports", "shards", "unit", "config", "labels", "state",
                 "topology", "undo", "started", "purge", "limits", "limits_auto", "timeout", "draining")

    _NO_CONFIG: dict = {}  # the default config's marker: None means "not read back yet", so {} stands for "none"

    def __init__(self, group: str, docker: Any, image: str = "", command: list[str] | None = None,
                 ports: list[Port] | None = None, shards: list[Shard] | None = None, unit: str = "",
                 config: dict | None = _NO_CONFIG, labels: dict | None = None, state: Group | None = None,
                 topology: Topology | None = None, undo: Undo | None = None, started: dict[int, dict] | None = None,
                 purge: bool = False, limits: list[dict] | None = None, limits_auto: list[str] | None = None,
                 timeout: int = 10, draining: set[int] | None = None):
        self.group = group
        self.docker = docker
        self.image = image
        self.command: list[str] = [] if command is None else command
        self.ports: list[Port] = [] if ports is None else ports
        self.shards: list[Shard] = [] if shards is None else shards
        self.unit = unit
        # None: not read back yet (see load_config)
        self.config: dict | None = {} if config is Context._NO_CONFIG else config
        self.labels: dict = {} if labels is None else labels
        self.state = state
        self.topology = topology
        self.undo = Undo() if undo is None else undo
        self.started: dict[int, dict] = {} if started is None else started
        self.purge = purge  # stop --purge
        self.limits: list[dict] = [] if limits is None else limits  # each shard's HostConfig limits, by index
        # those of their keys that follow a re-pin (quotas.auto_keys)
        self.limits_auto: list[str] = [] if limits_auto is None else limits_auto
        self.timeout = timeout  # stop -t (and how long scale/update give a shard to stop)
        self.draining: set[int] = set() if draining is None else draining  # shards out of the front door (scale/update)

    @classmethod
    def for_run(cls, req: RunRequest, client: Any, fe: Frontend) -> Context:
        """The context of ``run``: the request's group, labelled with its spec and the frontend's."""
        from tesson import cpulist
        from tesson.holdings import machine_id
        from tesson.spec import Spec

        p = req.placement
        restrict = None if p.restrict is None else cpulist.format(cpulist.bits(p.restrict))
        spec = Spec(req.group, req.image, list(req.command), list(req.port_specs), req.config, req.unit,
                    list(req.shards), fe.kind, list(p.near), p.exclusive, restrict, list(p.limits),
                    machine_id(req.topology) if req.topology is not None else "", no_isolated=p.no_isolated,
                    limits_auto=list(p.limits_auto))
        return cls(
            group=req.group,
            docker=client,
            image=req.image,
            command=list(req.command),
            ports=list(req.ports),
            shards=list(req.shards),
            unit=req.unit,
            config=req.config,
            labels={**spec.labels(), **fe.labels(), L.FRONTEND: fe.kind},
            topology=req.topology,
            limits=list(p.limits),
            limits_auto=list(p.limits_auto),
        )

    @classmethod
    def for_group(cls, grp: Group, client: Any, purge: bool = False, timeout: int = 10, spec: Any = None) -> Context:
        """The context of a group found on the daemon (``stop``, ``repair``, ``ps``), from its spec;
        ``scale``/``update`` give the spec they converge to (``spec``): new shards get its labels."""
        from tesson import ports as P

        labels = dict(grp.labels) if spec is None else {**grp.labels, **spec.labels()}
        ctx = cls(group=grp.name, docker=client, labels=labels, state=grp, purge=purge, timeout=timeout)
        spec = spec if spec is not None else grp.spec
        if spec is not None:
            ctx.image, ctx.command, ctx.config, ctx.unit = spec.image, list(spec.command), spec.config, spec.unit
            ctx.shards = list(spec.shards)
            ctx.limits = list(spec.limits)
            ctx.limits_auto = list(spec.limits_auto)
            try:
                ctx.ports = P.parse(spec.port_specs)
            except TessonError:
                ctx.ports = []
        return ctx

    def load_config(self) -> dict:
        """The group's config (``run -c``), recovered from a surviving shard when the context was
        rebuilt from labels (which keep only its digest): what recreating a shard needs.
        TessonError when no shard is left to read it from."""
        if self.config is None:
            from tesson import config

            if self.state is None:
                raise TessonError(f"group {self.group}: its config is unknown")
            self.config = config.recover(self.docker, self.state)
        return self.config

    def base_labels(self, role: str) -> dict:
        """The group's labels with ``io.tesson.role`` = role: for containers (and networks) a
        frontend makes. In ``run`` and ``repair`` they include ``io.tesson.run``, a fresh id per
        invocation: on failure the runtime also removes whatever carries it."""
        return {**self.labels, L.ROLE: role}

    def shard_name(self, index: int) -> str:
        return names.shard_name(self.group, index)

    def shard_names(self) -> list[str]:
        return [self.shard_name(s.index) for s in self.shards]


class Frontend:
    """The protocol, with do-nothing defaults; subclasses override what they need.

    Hooks raise :class:`tesson.errors.TessonError` (exit 1) with one clear line when they fail;
    during ``run`` the runtime then rolls back everything in ``ctx.undo``.
    """

    kind = "none"
    # Seconds after remove_backends returns until no new connection reaches the shards (the drain
    # waits this before it counts connections); None: the drain's own floor (drain.DRAIN_FLOOR).
    removal_lag: float | None = None

    @classmethod
    def from_request(cls, req: RunRequest) -> Frontend:
        """Build for ``run``; check its options here (UsageError), call no daemon."""
        return cls()

    @classmethod
    def from_labels(cls, labels: dict) -> Frontend:
        """Rebuild from a group's labels (``stop``/``ps``/``repair``), the inverse of :meth:`labels`."""
        return cls()

    def labels(self) -> dict:
        """Extra labels on every container of the group (settings needed after ``run``).

        ``io.tesson.frontend`` = :attr:`kind` is added by the runtime. Values are strings.
        """
        return {}

    def shape_shard(self, ctx: Context, shard: Shard, body: dict) -> None:
        """Edit one shard's create body in place (``ExposedPorts``, ``HostConfig.PortBindings``,
        ``HostConfig.NetworkMode``, ``NetworkingConfig``...). Called in ``run`` and ``repair``.
        Must not call the daemon (it runs once per shard, concurrently)."""

    def before_shards(self, ctx: Context) -> None:
        """Before any shard is created (e.g. make the network); ``ctx.undo.add`` what it makes.

        Runs before the group name is claimed (the claim is creating shard 0's container), so a
        concurrent ``run`` of the same group may be doing the same: refer to what you make by id.
        """

    def after_shards(self, ctx: Context) -> None:
        """After every shard is started and inspected (``ctx.started``): e.g. make and start the
        balancer, or register backends with their published ports; ``ctx.undo.add`` each thing."""

    def after_start(self, ctx: Context, indexes: list[int]) -> None:
        """The shards ``indexes`` were just started by tesson (any verb) and stayed up
        (``ctx.started[i]``): set up what the frontend keeps in their new network namespace (Gorb
        dr's service address on the loopback), before they join the door. Default: nothing."""

    def before_stop(self, ctx: Context) -> None:
        """Before the group's containers stop (e.g. withdraw Gorb services). ``ctx.state`` is the
        group; ``ctx.purge`` and ``ctx.timeout`` are stop's options."""

    def after_stop(self, ctx: Context) -> None:
        """After the containers stopped, or were removed with ``--purge`` (e.g. report what could
        not be withdrawn). The runtime then removes the group's networks with ``--purge``."""

    def repair(self, ctx: Context, recreated: list[int]) -> list[str]:
        """Bring the frontend back in line (a dead balancer, stale backends...) after the shards
        ``recreated`` came back (``ctx.started``; ``ctx.state``: the group as found); one line per thing done."""
        return []

    # scale/update (the module docstring gives their order and contract). Default: nothing.
    def remove_backends(self, ctx: Context, indexes: list[int]) -> None:
        """No new connection to these shards once this returns; open ones are not cut."""

    def hold_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Keep shards about to be created out, for a door that takes running shards in by itself."""

    def forget_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Their containers are stopped: drop whatever the door still keeps of them."""

    def add_backends(self, ctx: Context, indexes: list[int]) -> None:
        """Up and healthy (``ctx.started[i]``): send them connections. Idempotent."""

    def describe(self, ctx: Context) -> dict:
        """``ps``'s ``"frontend"`` object: ``{"kind", "status", "ports": ["0.0.0.0:8080->80/tcp"], ...}``
        (the table shows the three). Never raises: an unreachable frontend says so in ``status``;
        ``"degraded"`` (``balancer missing``) says why the door misses a running shard."""
        return {"kind": self.kind, "status": "-", "ports": []}


def load(kind: str) -> type[Frontend]:
    """The Frontend class of a kind, from ``tesson/frontend/KIND.py``."""
    if kind not in KINDS:
        raise TessonError(f"unknown frontend {kind!r} (known: {', '.join(KINDS)})")
    try:
        module = importlib.import_module(f"tesson.frontend.{kind}")
    except ModuleNotFoundError as e:
        if e.name != f"tesson.frontend.{kind}":
            raise
        what = {"nginx": "the embedded nginx balancer (--lb nginx)", "gorb": "Gorb (--gorb)"}.get(kind, kind)
        raise TessonError(f"{what} is not available in this version of tesson yet; use --lb none") from None
    return module.FRONTEND


def select(req: RunRequest) -> Frontend:
    """The frontend ``run`` asked for (``req.frontend.kind``), its options checked. ``auto`` (the
    default) is the kernel door where the daemon's host allows it, else nginx: see
    :func:`tesson.frontend.kernel_auto.choose`, the one case that asks the daemon here."""
    kind = req.frontend.kind
    if kind == "auto":
        from tesson.frontend import kernel_auto

        kind = kernel_auto.choose(req)
    return load(kind).from_request(req)


def check(req: RunRequest) -> Frontend:
    """What ``run --dry-run`` checks: the frontend's options, as :func:`select` would, without a
    daemon call (``auto`` is checked as nginx, the door it falls back to, which takes every option)."""
    kind = req.frontend.kind
    return load("nginx" if kind == "auto" else kind).from_request(req)


def from_labels(labels: dict) -> Frontend:
    """The frontend a group was run with, rebuilt from its labels."""
    return load(labels.get(L.FRONTEND) or "none").from_labels(labels)


def for_group(grp: Group) -> Frontend | None:
    """The frontend a group found on the daemon was run with, or None (logged) when this tesson
    cannot load it."""
    try:
        return from_labels(grp.labels)
    except TessonError as e:
        log.warning("frontend unavailable", group=grp.name, error=str(e))
        return None
