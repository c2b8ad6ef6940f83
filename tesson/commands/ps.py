"""tesson ps: every group (or one), rebuilt from container labels alone."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from tesson import cpulist

if TYPE_CHECKING:
    from tesson.group import Group


def _frontend_info(grp: Group, client: Any) -> dict:
    from tesson import frontend
    from tesson import labels as L

    fe = frontend.for_group(grp)
    kind = grp.labels.get(L.FRONTEND) or "none"
    if fe is None:
        return {"kind": kind, "status": "unknown (this tesson cannot load that frontend)", "ports": []}
    try:
        return fe.describe(frontend.Context.for_group(grp, client))
    except Exception as e:  # ps must list the containers whatever the frontend says
        from tesson.docker_client import explain

        return {"kind": kind, "status": f"unknown ({explain(e)})", "ports": []}


def headline(grp: Group, fe: dict) -> str:
    """The group's status: its shards' (``running 2/2``), but ``degraded 2/2 (balancer missing)``
    when every shard runs and the front door does not reach them."""
    status = grp.status
    why = fe.get("degraded")
    if why and status.startswith("running "):
        return f"degraded {status.split(' ', 1)[1]} ({why})"
    return status


def to_json(grp: Group, client: Any) -> dict:
    fe = _frontend_info(grp, client)
    return {
        "group": grp.name,
        "image": grp.image,
        "unit": grp.unit,
        "near": grp.near,
        "size": grp.size,
        "status": headline(grp, fe),
        "shards": [
            {
                "index": s.index,
                "id": s.short_id,
                "name": s.name,
                "status": s.status,
                "state": s.state,
                "cpus": list(s.cpus),
                "mems": list(s.mems),
                "ports": list(s.ports),
            }
            for s in grp.shards
        ],
        "frontend": fe,
    }


def print_groups(groups: list[Group], client: Any, fmt: str = "table", out: TextIO | None = None) -> None:
    from tesson.commands import write_table

    out = out or sys.stdout
    docs = [to_json(g, client) for g in groups]
    if fmt == "json":
        json.dump(docs, out, indent=2)
        out.write("\n")
        return
    for n, (grp, doc) in enumerate(zip(groups, docs)):
        if n:
            out.write("\n")
        near = f" near={','.join(grp.near)}" if grp.near else ""
        out.write(f"Group: {grp.name} [{grp.image}] unit={grp.unit} size={grp.size}{near} {doc['status']}\n")
        fe = doc["frontend"]
        front = ", ".join(fe.get("ports") or [])
        out.write(f"Frontend: {fe.get('kind')} ({fe.get('status')}){' ' + front if front else ''}\n")
        rows = [("SHARD", "INSTANCE ID", "STATUS", "NAME", "CPUS", "MEMS", "PORTS")]
        for s in grp.shards:
            status = s.status if s.up else f"DOWN: {s.status}"
            rows.append(
                (str(s.index), s.short_id or "-", status, s.name, cpulist.format(s.cpus), cpulist.format(s.mems), ", ".join(s.ports))
            )
        write_table(rows, out)
        for extra in grp.extra:
            out.write(f"note: {extra.name} ({extra.short_id}) claims shard {extra.index} but is not in the plan\n")


def ps(group: str | None = None, fmt: str = "table") -> int:
    from tesson import docker_client
    from tesson import group as G
    from tesson.errors import TessonError

    from tesson import names

    if group is not None:
        names.validate_group(group)  # an empty -g is no filter: it is a mistake (exit 2)
    client = docker_client.connect()
    groups = G.list_groups(client, group)
    if group and not groups:
        raise TessonError(f"no group named {group!r} (tesson ps lists every group)")
    if not groups and fmt != "json":
        print("no tesson groups on this Docker daemon", file=sys.stderr)
    print_groups(groups, client, fmt)
    return 0


def main(args: argparse.Namespace) -> int:
    return ps(args.group, args.format)
