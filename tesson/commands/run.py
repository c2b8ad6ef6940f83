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
    from typing import Any, Callable, TextIO

    from collections.abc import Sequence

    from tesson.frontend import Frontend
    from tesson.group import Group
    from tesson.near import Near
    from tesson.request import Placement, RunRequest
    from tesson.topology import Topology


def make_plan(group: str | None, image: str, fsroot: str, include_isolated: bool, unit: str,
              size: int | None, near: Sequence[str] = (), force: bool = False) -> Placement:
    """Read the topology under ``fsroot`` and split it as asked (within the CPUs local to the
    ``near`` devices, if any). The group defaults to one made from the image name (only when no
    name is given: an empty one is refused). ``size`` is bounded by :func:`placement.check_size`
    (``force``: up to the hard cap)."""
    group = names.validate_group(group) if group is not None else names.group_from_image(image)
    from tesson import placement, topology
    from tesson.cpulist import weight
    from tesson.request import Placement

    placement.check_size(size, 1, force=True)  # the hard cap, before reading anything
    topo = topology.read(fsroot, include_isolated=include_isolated)
    unit = placement.canonical_unit(unit)
    found = near_devices(topo, near)
    restrict = found.cpuset if found else None
    placement.check_size(size, weight(topo.cpuset if restrict is None else topo.cpuset & restrict), force)
    shards = placement.plan(topo, unit, size, restrict=restrict)
    return Placement(group, image, unit, topo, tuple(shards), tuple(near))


def near_devices(topo: Topology, specs: Sequence[str]) -> Near | None:
    """``--near``: the devices' CPUs, warnings on stderr; None without --near."""
    if not specs:
        return None
    from tesson import near

    found = near.resolve(topo, list(specs))
    for line in found.warnings:
        print(f"tesson: {line}", file=sys.stderr)
    return found


def _plan_of(args: argparse.Namespace) -> Placement:
    return make_plan(args.group, args.image, args.fsroot, not args.no_isolated, args.unit, args.size,
                     tuple(args.near or ()), force=args.force)


def run_request(args: argparse.Namespace) -> RunRequest:
    """Check everything that needs no daemon and make the request: ``-p`` specs, the config, the
    frontend's options, whether this machine's topology may be used, the plan."""
    from tesson import docker_client
    from tesson.request import FrontendOptions, RunRequest

    port_list = []
    if args.ports:  # parsing imports docker-py's helper: only when there is something to parse
        from tesson import ports

        port_list = ports.parse(args.ports)
    cfg = {}
    if args.config:
        from tesson import config as config_mod

        cfg = config_mod.load(args.config, allow_privileged=args.allow_privileged)
    options = FrontendOptions.choose(lb=args.lb, lb_method=args.lb_method, lb_image=args.lb_image,
                                     lb_cpus=args.lb_cpus, gorb_uri=args.gorb, gorb_method=args.gorb_method)
    docker_client.check_topology_source(args.fsroot_given)
    placement = _plan_of(args)
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


def _frontend_asked(req: RunRequest) -> bool:
    """Whether the request gives the frontend anything to check (ports, a config, its options)."""
    from tesson.request import FrontendOptions

    return bool(req.ports or req.config or req.frontend != FrontendOptions("nginx"))


def print_plan(plan: Placement, fmt: str, out: TextIO = sys.stdout) -> None:
    group, image, unit, shards, near = plan.group, plan.image, plan.unit, plan.shards, plan.near
    if fmt == "json":
        doc = {
            "group": group,
            "image": image,
            "unit": unit,
            "shards": [{"index": s.index, "cpus": list(s.cpus), "mems": list(s.mems)} for s in shards],
        }
        if near:
            doc["near"] = list(near)
        out.write(json.dumps(doc, indent=2) + "\n")  # one write: json.dump writes every token
        return
    from tesson import cpulist  # only here: it imports typing, which --format json need not pay for
    from tesson.commands import write_table

    near_text = f" near={','.join(near)}" if near else ""
    out.write(f"Group: {group} [{image}] unit={unit} size={len(shards)}{near_text}\n")
    rows = [("SHARD", "NAME", "CPUS", "MEMS")]
    rows += [(str(s.index), names.shard_name(group, s.index), cpulist.format(s.cpus), cpulist.format(s.mems))
             for s in shards]
    write_table(rows, out)


def start(req: RunRequest, fe: Frontend | None = None,
          show: Callable[[Group, Any], None] | None = None) -> tuple[Group | None, Any]:
    """The real run: the frontend's checks (unless ``fe`` is the frontend already checked), the
    image, the group name free, then start the group and ``show(group, client)`` it.

    Returns the group as found on the daemon afterwards and the client.
    """
    from tesson import docker_client, frontend, runtime
    from tesson import group as G

    fe = fe or frontend.select(req)
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    from tesson.pull import ensure_image

    ensure_image(client, req.image, req.pull)
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
    from tesson.runtime.pool import held_interrupts

    # Once the group is complete an interrupt is recorded, not raised: the run finishes and says so
    # (the group is shown) rather than report "interrupted" with the group left running. Until
    # then (inside runtime.run) Ctrl-C and SIGTERM undo it all.
    with held_interrupts():
        runtime.run(frontend.Context.for_run(req, client, fe), fe)
        grp = G.find(client, req.group)
        if show is not None and grp is not None:
            show(grp, client)
    return grp, client


def main(args: argparse.Namespace) -> int:
    req = run_request(args)
    # A dry run checks all a run checks before the daemon, the frontend's options too; with none of
    # them given (no -p, -c, --lb*, --gorb*) there is nothing to check, and the dry run stays light.
    fe = None
    if not args.dry_run or _frontend_asked(req):
        from tesson import frontend

        fe = frontend.select(req)
    if args.dry_run:
        print_plan(req.placement, args.format)
        return 0
    from tesson.commands import ps

    start(req, fe, show=lambda grp, client: ps.print_groups([grp], client, args.format))
    return 0
