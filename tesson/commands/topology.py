"""tesson topology: the CPUs, caches and NUMA nodes tesson sees, as a compact tree or as JSON."""

from __future__ import annotations

import json
import sys


def main(args) -> int:
    """The topology where tesson.probe says to read it. Unless it is the ``--fsroot`` folder the
    user named, the output says where that was: a first line ``Read from: ...`` (text), a
    ``"source"`` object (JSON)."""
    from tesson import probe, topology
    from tesson.topology.render import render_text

    src = probe.for_args(args)
    topo = topology.read(src.fsroot, include_isolated=not args.no_isolated)
    if args.format == "json":
        doc = topo.to_json()
        if src.kind != "fsroot":
            doc["source"] = src.to_json()
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        head = f"Read from: {src.where}\n" if src.kind != "fsroot" else ""
        sys.stdout.write(head + render_text(topo))
    return 0
