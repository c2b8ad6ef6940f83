"""tesson topology: the CPUs, caches and NUMA nodes tesson sees, as a compact tree or as JSON."""

from __future__ import annotations

import json
import sys


def main(args) -> int:
    from tesson import topology
    from tesson.topology.render import render_text

    topo = topology.read(args.fsroot, include_isolated=not args.no_isolated)
    if args.format == "json":
        sys.stdout.write(json.dumps(topo.to_json()) + "\n")
    else:
        sys.stdout.write(render_text(topo))
    return 0
