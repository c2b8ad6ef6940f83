"""tesson run: plan the shards from the topology, then (unless --dry-run) start them."""

from __future__ import annotations

import json
import sys

from tesson import cpulist, names


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
        json.dump(doc, out, indent=2)
        out.write("\n")
        return
    out.write(f"Group: {group} [{image}] unit={unit} size={len(shards)}\n")
    rows = [("SHARD", "NAME", "CPUS", "MEMS")]
    rows += [(str(s.index), f"{group}-{s.index}", cpulist.format(s.cpus), cpulist.format(s.mems)) for s in shards]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def main(args) -> int:
    if args.dry_run:
        group, unit, _topo, shards = make_plan(args)
        print_plan(group, args.image, unit, shards, args.format)
        return 0
    from tesson.errors import NotBuiltYet

    raise NotBuiltYet("'run' without --dry-run is not built yet in this version of tesson")
