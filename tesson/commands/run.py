"""tesson run: plan the shards from the topology, then (unless --dry-run) start them.

This is the edge: :func:`run_request` turns the command line into a
:class:`tesson.request.RunRequest`, and nothing below reads the Namespace.
"""

from __future__ import annotations

import json
import sys

from tesson import names

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO

    from tesson.frontend import Frontend
    from tesson.group import Group
    from tesson.near import Near
    from tesson.quotas import Quotas
    from tesson.request import Placement, RunRequest
    from tesson.topology import Topology


def make_plan(group: str | None, image: str, fsroot: str, include_isolated: bool, unit: str,
              size: int | None, near: Sequence[str] = (), cpus: str | None = None, exclusive: str = "",
              quotas: Quotas | None = None, claims: Sequence | None = (), config: dict | None = None,
              force: bool = False) -> Placement:
    """Read the topology under ``fsroot`` and plan the group as asked: within ``--cpus`` and the
    CPUs local to the ``near`` devices (if any), next to the groups whose ``claims`` are given
    (tesson.holdings; () = none: the whole machine is free). The group defaults to one made from
    the image name (only when no name is given: an empty one is refused). ``size`` is bounded by
    :func:`placement.check_size` (``force``: up to the hard cap) before anything is planned.

    The topology is read whole, the kernel's isolated CPUs included (another group may hold them);
    ``include_isolated`` False (--no-isolated) leaves them out of this group's CPUs as one more
    mask (tesson.holdings.own_cpus), recorded with the group so every later plan of it does too."""
    group = names.validate_group(group) if group is not None else names.group_from_image(image)
    from tesson import holdings, placement, sharing, topology
    from tesson.cpulist import weight
    from tesson.request import Placement

    topo = topology.read(fsroot)
    no_isolated = not include_isolated
    usable = holdings.own_cpus(topo, None, no_isolated)
    if usable == 0:
        from tesson.errors import UsageError

        raise UsageError(f"no CPU is both online and allowed by this process's cpuset and not isolated (fsroot {fsroot!r})")
    unit = placement.canonical_unit(unit)
    found = near_devices(topo, near)
    restrict = cpus_mask(topo, cpus, topo.cpuset if usable is None else usable)
    if found is not None:
        if restrict is not None and not restrict & found.cpuset:
            from tesson.errors import TessonError

            raise TessonError(f"--cpus {cpus} and --near {','.join(near)} have no CPU in common "
                              f"(the devices' CPUs: {_fmt(found.cpuset)})")
        restrict = found.cpuset & topo.cpuset if restrict is None else restrict & found.cpuset
    within = holdings.own_cpus(topo, restrict, no_isolated)
    placement.check_size(size, weight(topo.cpuset if within is None else within), force)
    p = Placement(group, image, unit, topo, (), tuple(near), exclusive=exclusive, restrict=restrict,
                  no_isolated=no_isolated, size_asked=size, quotas=quotas or None)
    return sharing.place(p, list(claims or ()), config)


def _fmt(mask: int) -> str:
    from tesson import cpulist

    return cpulist.format(cpulist.bits(mask))


def cpus_mask(topo: Topology, text: str | None, usable: int | None = None) -> int | None:
    """``--cpus LIST`` as a mask: UsageError (exit 2) when malformed, TessonError (exit 1) when it
    names CPUs this machine does not allow (offline, outside this process's cpuset, isolated with
    --no-isolated: ``usable``, default the topology's allowed CPUs)."""
    if text is None:
        return None
    from tesson import cpulist
    from tesson.errors import TessonError, UsageError

    try:
        mask = cpulist.list_to_mask(text)
    except ValueError as e:
        raise UsageError(f"--cpus: {e}") from None
    if not mask:
        raise UsageError("--cpus: name at least one CPU, e.g. --cpus 0-3")
    usable = topo.cpuset if usable is None else usable
    if mask & ~usable:
        isolated = " (isolated, and --no-isolated was given)" if mask & ~usable & topo.cpuset else ""
        raise TessonError(f"--cpus {text}: CPU {_fmt(mask & ~usable)} is not allowed on this machine{isolated} "
                          f"(allowed: {_fmt(usable)}; see tesson topology)")
    return mask


def near_devices(topo: Topology, specs: Sequence[str]) -> Near | None:
    """``--near``: the devices' CPUs, warnings on stderr; None without --near."""
    if not specs:
        return None
    from tesson import near

    found = near.resolve(topo, list(specs))
    for line in found.warnings:
        print(f"tesson: {line}", file=sys.stderr)
    return found


def _options(args: argparse.Namespace) -> tuple[str, Quotas | None]:
    """``--exclusive``/``--spread`` and the quota options, checked (UsageError)."""
    from tesson.errors import UsageError

    if args.spread and not args.exclusive:
        raise UsageError("--spread goes with --exclusive (a shared group is spread by hwloc's distribution already)")
    exclusive = ("spread" if args.spread else "packed") if args.exclusive else ""
    q = None
    if args.memory or args.memory_reservation or args.cpu_shares:
        from tesson.quotas import Quotas

        q = Quotas.parse(args.memory, args.memory_reservation, args.cpu_shares)
    return exclusive, q


def _plan_of(args: argparse.Namespace, claims: Sequence | None = (), config: dict | None = None,
             ask: bool = False) -> Placement:
    """The plan, from the topology where tesson.probe says to read it (``ask``: a real run, which
    checks the daemon's host even without DOCKER_HOST)."""
    from tesson import probe

    exclusive, q = _options(args)
    src = probe.for_args(args, ask=ask)
    return make_plan(args.group, args.image, src.fsroot, not args.no_isolated, args.unit, args.size,
                     tuple(args.near or ()), args.cpus, exclusive, q, claims, config, force=args.force)


def run_request(args: argparse.Namespace, ask: bool = True) -> RunRequest:
    """Check everything that needs no daemon and make the request: ``-p`` specs, the config, the
    frontend's options, the plan (from this machine's topology, or the daemon host's: tesson.probe;
    ``ask`` False, as a dry run does, asks the daemon nothing), as if no other group held any CPU:
    :func:`start` plans again, under the daemon's lock, next to the groups there."""
    from tesson.request import FrontendOptions, RunRequest

    port_list: list = []
    if args.ports:  # only then: tesson.ports and tesson.config cost a dry run more than its plan
        from tesson import ports

        port_list = ports.parse(args.ports)
    cfg: dict = {}
    if args.config:
        from tesson import config as config_mod

        cfg = config_mod.load(args.config, allow_privileged=args.allow_privileged)
    options = FrontendOptions.choose(lb=args.lb, lb_method=args.lb_method, lb_image=args.lb_image,
                                     lb_cpus=args.lb_cpus, gorb_uri=args.gorb, gorb_method=args.gorb_method,
                                     gorb_forward=args.gorb_forward, macvlan_range=args.macvlan_range)
    placement = _plan_of(args, (), cfg, ask=ask)
    command = list(args.command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    return RunRequest(
        placement=placement,
        command=tuple(command),
        port_specs=tuple(args.ports),
        ports=tuple(port_list),
        config=cfg,
        frontend=options,
        pull=args.pull,
    )


def dry_run(req: RunRequest, listing=None) -> Placement:
    """The plan ``run`` would make now, next to the groups on the daemon (``listing``: a
    tesson.daemon_claims.Listing already asked, else one asked now); when no daemon answers, on the
    whole machine (and a note on stderr says so)."""
    if listing is None:
        from tesson import daemon_claims

        listing = daemon_claims.Listing()
    claims, why = listing.claims(req.topology)
    if claims is None:
        print(f"tesson: note: no Docker daemon reachable ({why}): planned on the whole machine, as if no "
              f"group held any CPU", file=sys.stderr)
        return req.placement
    if not claims:
        return req.placement
    from tesson import sharing

    placed = sharing.place(req.placement, claims, req.config)
    for line in placed.warnings:
        print(f"tesson: {line}", file=sys.stderr)
    return placed


def _frontend_asked(req: RunRequest) -> bool:
    """Whether the request gives the frontend anything to check (ports, a config, its options)."""
    from tesson.request import FrontendOptions

    return bool(req.ports or req.config or req.frontend != FrontendOptions("auto"))


def plan_json(doc: dict) -> str:
    """The plan's document, one key per line and one object per line in its lists (``"shards"``,
    ``"repins"``): as readable as ``indent=2`` for a few shards and much shorter for many, and made
    by the json module's C encoder (``indent`` falls back to the Python one: 14 ms against 2 for an
    exclusive dry run's 400 re-pins). One write: json.dump writes every token."""
    lines = []
    for key, value in doc.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"    {json.dumps(x)}" for x in value)
            lines.append(f"  {json.dumps(key)}: [\n{items}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def print_plan(plan: Placement, fmt: str, out: TextIO = sys.stdout) -> None:
    group, image, unit, shards, near = plan.group, plan.image, plan.unit, plan.shards, plan.near
    lims = plan.limits
    if fmt == "json":
        shard_docs: list[dict[str, Any]] = [{"index": s.index, "cpus": list(s.cpus), "mems": list(s.mems)}
                                            for s in shards]
        doc: dict[str, Any] = {
            "group": group,
            "image": image,
            "unit": unit,
            "shards": shard_docs,
        }
        if near:
            doc["near"] = list(near)
        if plan.exclusive:
            doc["exclusive"] = plan.exclusive
        if plan.restrict is not None:
            from tesson.cpulist import bits

            doc["cpus_restrict"] = bits(plan.restrict)
        if plan.no_isolated:
            doc["no_isolated"] = True
        if lims:
            for d, lim in zip(shard_docs, lims):
                d["limits"] = lim
        if plan.repins:
            doc["repins"] = [{"group": m.group, "shard": m.index, "from": list(m.old_cpus), "to": list(m.cpus),
                              "mems": list(m.mems), **({"limits": m.limits} if m.limits else {})}
                             for m in plan.repins]
        out.write(plan_json(doc))
        return
    from tesson import cpulist  # only here: it imports typing, which --format json need not pay for
    from tesson.commands import write_table

    near_text = f" near={','.join(near)}" if near else ""
    if plan.restrict is not None:
        near_text += f" cpus={cpulist.format(cpulist.bits(plan.restrict))}"
    if plan.exclusive:
        near_text += f" exclusive={plan.exclusive}"
    if plan.no_isolated:
        near_text += " no-isolated"
    out.write(f"Group: {group} [{image}] unit={unit} size={len(shards)}{near_text}\n")
    rows: list[tuple[str, ...]] = [("SHARD", "NAME", "CPUS", "MEMS")]
    rows += [(str(s.index), names.shard_name(group, s.index), cpulist.format(s.cpus), cpulist.format(s.mems))
             for s in shards]
    if lims:
        from tesson.quotas import describe

        rows[0] += ("LIMITS",)
        rows[1:] = [r + (describe(lim),) for r, lim in zip(rows[1:], lims)]
    write_table(rows, out)
    for m in plan.repins:
        follow = ""
        if m.limits:
            from tesson.quotas import describe

            follow = f", limits {describe(m.limits)}"
        out.write(f"re-pin: {names.shard_name(m.group, m.index)} (shared group {m.group}) "
                  f"{cpulist.format(m.old_cpus)} -> {cpulist.format(m.cpus)}{follow}\n")


def start(req: RunRequest, fe: Frontend | None = None,
          show: Callable[[Group, Any], None] | None = None) -> tuple[Group | None, Any]:
    """The real run: the frontend's checks (unless ``fe`` is the frontend already checked), the
    image, then, holding the daemon's lock (tesson.daemon_lock): the group name free, the plan made
    again next to the groups on the daemon, the shared groups re-pinned live if this exclusive
    group takes their CPUs, the group started and ``show(group, client)`` it. A failure rolls back
    the re-pins with the shards.

    Returns the group as found on the daemon afterwards and the client.
    """
    from tesson import daemon_claims, daemon_lock, docker_client, frontend, runtime, sharing
    from tesson import group as G
    from tesson.runtime import repin

    fe = fe or frontend.select(req)
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    from tesson.pull import ensure_image

    ensure_image(client, req.image, req.pull)
    with daemon_lock.held(client, req.image):
        existing = G.find(client, req.group)
        if existing is not None and existing.shards and all(sh.state in ("created", "missing") for sh in existing.shards):
            # created, never started: a run of the group under way (or one that died half-way)
            raise runtime.GroupInUse(
                f"group {req.group!r} is already in use: its containers are created, not started (another run "
                f"may be starting it); if none is, remove them first: tesson stop -g {req.group} --purge"
            )
        if existing is not None and existing.status.startswith("stopped"):
            raise runtime.GroupInUse(
                f"group {req.group!r} exists and is stopped ({existing.status}): start it with "
                f"'tesson start {req.group}', or remove it first: tesson stop -g {req.group} --purge"
            )
        if existing is not None:
            raise runtime.GroupInUse(
                f"group {req.group!r} is already in use ({existing.status}); "
                f"stop it first: tesson stop -g {req.group} --purge"
            )
        claims, why = daemon_claims.load(req.topology, client)
        if claims is None:
            from tesson.errors import TessonError

            raise TessonError(f"cannot list the groups on the daemon: {why}")
        req = req._replace(placement=sharing.place(req.placement, claims, req.config))
        for line in req.placement.warnings:
            print(f"tesson: {line}", file=sys.stderr)
        ctx = frontend.Context.for_run(req, client, fe)
        if req.placement.repins:
            claimed = {c.name: c for c in claims}
            for m in req.placement.repins:
                m.containers = claimed[m.group].containers.get(m.index, [])
            repin.apply(client, list(req.placement.repins), ctx.undo)
        from tesson.runtime.pool import held_interrupts

        # Once the group is complete an interrupt is recorded, not raised: the run finishes and says
        # so (the group is shown) rather than report "interrupted" with the group left running.
        # Until then (inside runtime.run) Ctrl-C and SIGTERM undo it all, the re-pins too (ctx.undo).
        with held_interrupts():
            runtime.run(ctx, fe)
            grp = G.find(client, req.group)
            if show is not None and grp is not None:
                show(grp, client)
    return grp, client


def main(args: argparse.Namespace) -> int:
    listing = None
    if args.dry_run:  # the groups on the daemon, asked first: the daemon lists while the topology is read
        from tesson import daemon_claims

        listing = daemon_claims.Listing()
    req = run_request(args, ask=not args.dry_run)
    # A dry run checks all a run checks before the daemon, the frontend's options too; with none of
    # them given (no -p, -c, --lb*, --gorb*) there is nothing to check, and the dry run stays light.
    if args.dry_run:
        if _frontend_asked(req):
            from tesson import frontend

            frontend.check(req)
        print_plan(dry_run(req, listing), args.format)
        return 0
    from tesson import frontend
    from tesson.commands import ps

    start(req, frontend.select(req), show=lambda grp, client: ps.print_groups([grp], client, args.format))
    return 0
