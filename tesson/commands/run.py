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
    from typing import Any, TextIO

    from collections.abc import Sequence

    from tesson.group import Group
    from tesson.near import Near
    from tesson.request import Placement, RunRequest
    from tesson.topology import Topology


def make_plan(group: str | None, image: str, fsroot: str, include_isolated: bool, unit: str,
              size: int | None, near: Sequence[str] = ()) -> Placement:
    """Read the topology under ``fsroot`` and split it as asked (within the CPUs local to the
    ``near`` devices, if any). The group defaults to one made from the image name."""
    group = names.validate_group(group) if group else names.group_from_image(image)
    from tesson import placement, topology
    from tesson.request import Placement

    topo = topology.read(fsroot, include_isolated=include_isolated)
    unit = placement.canonical_unit(unit)
    found = near_devices(topo, near)
    shards = placement.plan(topo, unit, size, restrict=found.cpuset if found else None)
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


def _plan_of(args: argparse.Namespace, ask: bool = False) -> Placement:
    """The plan, from the topology where tesson.probe says to read it (``ask``: a real run, which
    checks the daemon's host even without DOCKER_HOST)."""
    from tesson import probe

    src = probe.for_args(args, ask=ask)
    return make_plan(args.group, args.image, src.fsroot, not args.no_isolated, args.unit, args.size,
                     tuple(args.near or ()))


def run_request(args: argparse.Namespace) -> RunRequest:
    """Check everything that needs no daemon and make the request: ``-p`` specs, the config, the
    frontend's options, then the plan (from this machine's topology, or the daemon host's: tesson.probe)."""
    from tesson import config as config_mod
    from tesson import ports
    from tesson.request import FrontendOptions, RunRequest

    port_list = ports.parse(args.ports)
    cfg = config_mod.load(args.config) if args.config else {}
    options = FrontendOptions.choose(lb=args.lb, lb_method=args.lb_method, lb_image=args.lb_image,
                                     lb_cpus=args.lb_cpus, gorb_uri=args.gorb, gorb_method=args.gorb_method,
                                     gorb_forward=args.gorb_forward, macvlan_range=args.macvlan_range)
    placement = _plan_of(args, ask=True)
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


def start(req: RunRequest) -> tuple[Group | None, Any]:
    """The real run: the frontend's checks, the image, the group name free, then start the group.

    Returns the group as found on the daemon afterwards and the client.
    """
    from tesson import docker_client, frontend, runtime
    from tesson import group as G

    fe = frontend.select(req)
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    from tesson.pull import ensure_image

    ensure_image(client, req.image, req.pull)
    existing = G.find(client, req.group)
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
    runtime.run(frontend.Context.for_run(req, client, fe), fe)
    return G.find(client, req.group), client


def main(args: argparse.Namespace) -> int:
    if args.dry_run:
        print_plan(_plan_of(args), args.format)
        return 0
    from tesson.commands import ps

    grp, client = start(run_request(args))
    if grp is not None:
        ps.print_groups([grp], client, args.format)
    return 0
