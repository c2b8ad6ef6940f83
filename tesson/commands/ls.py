"""tesson ls: the groups on the daemon, one line each (name, status, image, size, frontend)."""

from __future__ import annotations

import json
import sys


def rows(groups) -> list[dict]:
    """One dict per group: what a line of ``ls`` shows. The frontend is the kind the group was run
    with and its published ports as given to ``-p`` (from the labels: no more daemon calls)."""
    out = []
    for g in groups:
        spec = g.spec
        ports = list(spec.port_specs) if spec is not None else []
        kind = spec.frontend if spec is not None else "unknown"
        out.append({"name": g.name, "status": g.status, "image": g.image, "size": g.size,
                    "frontend": kind, "ports": ports})
    return out


def ls(fmt: str, quiet: bool, out=None) -> int:
    from tesson import docker_client, shardio

    out = out or sys.stdout
    found = rows(shardio.list_groups(docker_client.connect_read()))
    if quiet:
        out.write("".join(r["name"] + "\n" for r in found))
    elif fmt == "json":
        out.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in found))
    else:
        table = [("NAME", "STATUS", "IMAGE", "SIZE", "FRONTEND")]
        table += [(r["name"], r["status"], r["image"], str(r["size"]),
                   " ".join([r["frontend"], *r["ports"]])) for r in found]
        widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
        out.write("".join("   ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() + "\n" for t in table))
    return 0


def main(args) -> int:
    return ls(args.format, args.quiet)
