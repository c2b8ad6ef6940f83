"""tesson ps: every group (or some), rebuilt from container labels alone, shown as ``docker ps`` would.

Outputs: the default view (each group with its frontend, then its shards in Docker's columns);
``--format json`` (one compact object per shard and line, as ``docker ps --format json``);
``--format 'table TEMPLATE'`` / ``TEMPLATE`` (tesson.psformat); ``-q`` (the shards' container IDs);
``--json`` (the whole document: every group with its shards and frontend, indented).
Filters as ``docker ps --filter``: the same key given twice matches either value, different keys
must all match. A group that does not exist is not an error: nothing matches, exit 0.
"""

from __future__ import annotations

import argparse
import json
import sys

from tesson import cpulist

TYPE_CHECKING = False  # typing is not imported on ps's path
if TYPE_CHECKING:
    from typing import Any, TextIO

    from tesson.group import Group, ShardState

# --format fields and their table headers (the one home of ps's display names).
FIELDS = {
    "Group": "GROUP",
    "Shard": "SHARD",
    "Name": "NAME",
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Status": "STATUS",
    "State": "STATE",
    "CPUs": "CPUS",
    "Mems": "MEMS",
    "Ports": "PORTS",
}
FILTER_KEYS = ("group", "status", "image")
# Docker's container states (docker ps --filter status=...), and tesson's own for a vanished shard.
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead", "missing")
PORTS_SHOWN = ("running", "paused")  # as docker ps: a stopped container publishes nothing


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
        "exclusive": grp.exclusive or None,
        "size": grp.size,
        "status": headline(grp, fe),
        "change": grp.change,
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
                "limits": grp.limits_of(s.index),
            }
            for s in grp.shards
        ],
        "previous": [{"index": i, "id": p.short_id, "name": p.name, "state": p.state}
                     for i, p in sorted(grp.previous.items())],  # kept by an update until its successor is healthy
        "frontend": fe,
    }


def _ports(s: ShardState) -> list:
    return list(s.ports) if s.state in PORTS_SHOWN else []


def row(grp: Group, s: ShardState) -> dict:
    """One shard as the --format fields see it (every value a string, "" when there is none)."""
    return {
        "Group": grp.name,
        "Shard": str(s.index),
        "Name": s.name,
        "ID": s.short_id,
        "Image": grp.image,
        "Status": s.status,
        "State": s.state,
        "CPUs": cpulist.format(s.cpus),
        "Mems": cpulist.format(s.mems),
        "Ports": ", ".join(_ports(s)),
    }


def shards_of(grp: Group) -> list:
    """The group's shards in index order: the plan's (vanished ones too) and any extra container
    that claims an index outside it."""
    return sorted([*grp.shards, *grp.extra], key=lambda s: s.index)


# --- filters ----------------------------------------------------------------------------------------


def parse_filters(terms: list, groups: list) -> dict:
    """``--filter KEY=VALUE`` terms (and the groups named positionally or with -g, which count as
    ``group=``) into ``{key: set of values}``. UsageError (exit 2) for a term outside the grammar."""
    from tesson import names
    from tesson.errors import UsageError

    out: dict = {}
    for term in terms:
        key, sep, value = term.partition("=")
        key = key.strip().lower()
        if not sep or key not in FILTER_KEYS:
            raise UsageError(f"invalid filter {term!r}: use {', '.join(k + '=' for k in FILTER_KEYS)}")
        if key == "status" and value not in STATES:
            raise UsageError(f"invalid filter {term!r}: status is one of {', '.join(STATES)}")
        if not value:
            raise UsageError(f"invalid filter {term!r}: {key}= needs a value")
        out.setdefault(key, set()).add(value)
    for g in groups:
        out.setdefault("group", set()).add(g)
    for g in out.get("group", ()):
        names.validate_group(g)
    return out


def _image_key(ref: str) -> str:
    """An image reference with Docker's implied ``:latest`` (``web`` and ``web:latest`` match)."""
    if "@" in ref:
        return ref
    return ref if ":" in ref.rsplit("/", 1)[-1] else ref + ":latest"


def select(groups: list, filters: dict) -> list:
    """``[(group, [shards])]`` that pass the filters, in name order; a status filter keeps only the
    matching shards and drops a group none of whose shards match."""
    out = []
    images = {_image_key(i) for i in filters.get("image", ())}
    for grp in groups:
        if "group" in filters and grp.name not in filters["group"]:
            continue
        if images and _image_key(grp.image) not in images:
            continue
        shards = shards_of(grp)
        if "status" in filters:
            shards = [s for s in shards if s.state in filters["status"]]
            if not shards:
                continue
        out.append((grp, shards))
    return out


# --- output -----------------------------------------------------------------------------------------


def write_default(selected: list, client: Any, out: TextIO) -> None:
    """The default view: per group its line, its frontend, its shards in Docker's columns."""
    from tesson.cli import program_name, with_prog
    from tesson.psformat import tabwrite

    prog = program_name()
    for n, (grp, shards) in enumerate(selected):
        if n:
            out.write("\n")
        near = f" near={','.join(grp.near)}" if grp.near else ""
        near += f" exclusive={grp.exclusive}" if grp.exclusive else ""
        fe = _frontend_info(grp, client)
        change = grp.change or {}
        image = grp.image
        if change.get("verb") == "update" and change.get("old_image") not in (None, grp.image):
            image = f"{grp.image} <- {change['old_image']}"  # new and old during a rolling update
        out.write(f"Group: {grp.name} [{image}] unit={grp.unit} size={grp.size}{near} {headline(grp, fe)}\n")
        front = ", ".join(fe.get("ports") or [])
        status = with_prog(str(fe.get("status")), prog)  # "stale: run tesson repair ..."
        out.write(f"Frontend: {fe.get('kind')} ({status}){' ' + front if front else ''}\n")
        limits = any(grp.limits_of(s.index) for s in grp.shards)
        lines = ["SHARD\tCONTAINER ID\tNAME\tSTATUS\tCPUS\tMEMS\tPORTS" + ("\tLIMITS" if limits else "")]
        for s in shards:
            status = s.status if s.up else f"DOWN: {s.status}"
            cells: tuple[str, ...] = (str(s.index), s.short_id or "-", s.name, status, cpulist.format(s.cpus),
                     cpulist.format(s.mems), ", ".join(_ports(s)))
            if limits:
                from tesson.quotas import describe

                cells += (describe(grp.limits_of(s.index)),)
            lines.append("\t".join(cells))
        out.write("".join(ln.rstrip() + "\n" for ln in tabwrite("\n".join(lines)).split("\n")))
        for index, prev in sorted(grp.previous.items()):
            out.write(f"note: {prev.name} ({prev.short_id}, {prev.state}) is shard {index}'s previous version, kept "
                      f"until its successor is healthy{'' if grp.change else f' ({prog} repair {grp.name} finishes the step)'}\n")
        planned = {id(s) for s in grp.shards}
        for extra in (s for s in shards if id(s) not in planned):
            out.write(f"note: {extra.name} ({extra.short_id}) claims shard {extra.index} but is not in the plan\n")


def print_groups(groups: list, client: Any, fmt: str = "table", out: TextIO | None = None) -> None:
    """Groups in the default view (``fmt`` table) or as the ``--json`` document (``fmt`` json)."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump([to_json(g, client) for g in groups], out, indent=2)
        out.write("\n")
        return
    write_default([(g, shards_of(g)) for g in groups], client, out)


def ps(groups: list | None = None, fmt: str = "table", document: bool = False, quiet: bool = False,
       filters: list | None = None, out: TextIO | None = None) -> int:
    """``groups``: names given positionally or with -g; ``fmt``: the --format text; ``document``:
    --json; ``quiet``: -q; ``filters``: the --filter terms. Bad input is a UsageError before any
    daemon call."""
    from tesson import docker_client, names, psformat
    from tesson import group as G
    from tesson.errors import UsageError

    for name in groups or []:
        names.validate_group(name)  # an empty -g is no filter: it is a mistake (exit 2)
    out = out or sys.stdout
    try:
        form = psformat.parse(fmt, FIELDS)
    except psformat.FormatError as e:
        raise UsageError(str(e)) from None
    wanted = parse_filters(filters or [], groups or [])
    client = docker_client.connect_read()
    only = sorted(wanted.get("group", ()))
    found = G.list_groups(client, only[0]) if len(only) == 1 else G.list_groups(client)
    selected = select(found, wanted)
    if quiet:
        out.write("".join(s.short_id + "\n" for _, shards in selected for s in shards if s.id))
    elif document:
        json.dump([to_json(g, client) for g, _ in selected], out, indent=2)
        out.write("\n")
    elif form.kind == "default":
        if not found and not wanted:
            print("no tesson groups on this Docker daemon", file=sys.stderr)
        write_default(selected, client, out)
    else:
        out.write(psformat.render(form, [row(g, s) for g, shards in selected for s in shards], FIELDS))
    return 0


def main(args: argparse.Namespace) -> int:
    return ps([args.group] if args.group is not None else [], args.format, args.json, args.quiet, args.filter)
