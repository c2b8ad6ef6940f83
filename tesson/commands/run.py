"""tesson run: plan the shards from the topology, then (unless --dry-run) start them."""

from __future__ import annotations

import json
import sys

from tesson import names


def make_plan(args):
    """Read the topology under --fsroot and split it as asked: (group, unit, shards)."""
    group = names.validate_group(args.group) if args.group else names.group_from_image(args.image)
    from tesson import placement, topology

    topo = topology.read(args.fsroot, include_isolated=not args.no_isolated)
    unit = placement.canonical_unit(args.unit)
    shards = placement.plan(topo, unit, args.size)
    return group, unit, topo, shards


def print_plan(group: str, image: str, unit: str, shards, fmt: str, out=sys.stdout) -> None:
    if fmt == "json":
        doc = {
            "group": group,
            "image": image,
            "unit": unit,
            "shards": [{"index": s.index, "cpus": list(s.cpus), "mems": list(s.mems)} for s in shards],
        }
        out.write(json.dumps(doc, indent=2) + "\n")  # one write: json.dump writes every token
        return
    from tesson import cpulist  # only here: it imports typing, which --format json need not pay for

    out.write(f"Group: {group} [{image}] unit={unit} size={len(shards)}\n")
    rows = [("SHARD", "NAME", "CPUS", "MEMS")]
    rows += [(str(s.index), f"{group}-{s.index}", cpulist.format(s.cpus), cpulist.format(s.mems)) for s in shards]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def start(args):
    """The real run: check everything that needs no daemon first, then start the group.

    Returns the group as found on the daemon afterwards (tesson.group.Group) and the client.
    """
    from tesson import config as config_mod
    from tesson import docker_client, frontend, ports, runtime
    from tesson import group as G

    port_list = ports.parse(args.ports)
    cfg = config_mod.load(args.config) if args.config else {}
    fe = frontend.select(args)
    docker_client.check_topology_source(args)
    group, unit, _topo, shards = make_plan(args)
    command = list(args.command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    from tesson.pull import ensure_image

    ensure_image(client, args.image, args.pull)
    existing = G.find(client, group)
    if existing is not None and existing.status.startswith("stopped"):
        raise runtime.GroupInUse(
            f"group {group!r} exists and is stopped ({existing.status}): start it with 'tesson start {group}', "
            f"or remove it first: tesson stop -g {group} --purge"
        )
    if existing is not None:
        raise runtime.GroupInUse(
            f"group {group!r} is already in use ({existing.status}); "
            f"stop it first: tesson stop -g {group} --purge"
        )
    spec = G.Spec(group, args.image, command, list(args.ports), cfg, unit, list(shards), fe.kind)
    ctx = frontend.Context(
        group=group,
        docker=client,
        image=args.image,
        command=command,
        ports=port_list,
        shards=list(shards),
        unit=unit,
        config=cfg,
        labels={**spec.labels(), **fe.labels(), G.FRONTEND: fe.kind},
        args=args,
    )
    runtime.run(ctx, fe)
    return G.find(client, group), client


def main(args) -> int:
    if args.dry_run:
        group, unit, _topo, shards = make_plan(args)
        print_plan(group, args.image, unit, shards, args.format)
        return 0
    from tesson.commands import ps

    grp, client = start(args)
    if grp is not None:
        ps.print_groups([grp], client, args.format)
    return 0
