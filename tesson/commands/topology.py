"""tesson topology: the CPUs, caches and NUMA nodes tesson sees, as a compact tree or as JSON; with
``--groups``, every CPU marked by the group and shard holding it (tesson.holdings)."""

from __future__ import annotations

import sys


def group_marks(holders: dict) -> dict[int, str]:
    """CPU id -> ``<- web-0 (exclusive)``, ``<- api-0, api-1 (shared)`` or both (``; ``); free CPUs
    have none."""
    from tesson import names

    out = {}
    for cpu, held in holders.items():
        parts = []
        for kind in ("exclusive", "shared"):
            who = [names.shard_name(g, i) for g, i, k in held if k == kind]
            if who:
                parts.append(f"{', '.join(who)} ({kind})")
        out[cpu] = "<- " + "; ".join(parts)
    return out


def groups_json(topo, claims, holders: dict, whole=None) -> dict:
    """The facts of the text view: each group's pins now (planned on ``whole``, the topology with
    isolated CPUs, when ``topo`` was read without), and each CPU of ``topo``'s holders."""
    from tesson import holdings

    eff = holdings.effective(whole or topo, claims)
    return {
        "groups": [
            {
                "name": c.name,
                "exclusive": c.exclusive or None,
                "unit": c.unit,
                "cpus_restrict": None if c.restrict is None else [i for i in range(c.restrict.bit_length()) if c.restrict >> i & 1],
                "foreign": c.foreign,
                "shards": [{"index": s.index, "cpus": list(s.cpus), "mems": list(s.mems)} for s in eff[c.name] or ()],
            }
            for c in claims
        ],
        "cpus": [
            {"cpu": cpu, "holders": [{"group": g, "shard": i, "kind": k} for g, i, k in holders.get(cpu, ())]}
            for cpu in topo.pus
        ],
    }


def main(args) -> int:
    """The topology where tesson.probe says to read it. Unless it is the ``--fsroot`` folder the
    user named, the output says where that was: a first line ``Read from: ...`` (text), a
    ``"source"`` object (JSON)."""
    from tesson import probe, topology
    from tesson.topology.render import render_text

    src = probe.for_args(args)
    listing = None
    if getattr(args, "groups", False):  # asked first: the daemon lists while the topology is read
        from tesson import daemon_claims

        listing = daemon_claims.Listing()
    topo = topology.read(src.fsroot, include_isolated=not args.no_isolated)
    if listing is not None:
        from tesson import holdings
        from tesson.errors import TessonError

        # groups are planned on the whole topology (isolated CPUs too: tesson.holdings.own_cpus)
        whole = topo if not topo.isolated or not args.no_isolated else topology.read(src.fsroot)
        claims, why = listing.claims(whole)
        if claims is None:
            raise TessonError(f"--groups asks the Docker daemon, which cannot be reached: {why}")
        held = holdings.holders(whole, claims)
        if args.format == "json":
            import json

            sys.stdout.write(json.dumps({**topo.to_json(), **groups_json(topo, claims, held, whole)}) + "\n")
        else:
            sys.stdout.write(render_text(topo, marks=group_marks(held)))
        return 0
    if args.format == "json":
        import json  # only here: the text view need not pay for it

        doc = topo.to_json()
        if src.kind != "fsroot":
            doc["source"] = src.to_json()
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        head = f"Read from: {src.where}\n" if src.kind != "fsroot" else ""
        sys.stdout.write(head + render_text(topo))
    return 0
