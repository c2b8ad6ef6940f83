"""The label vocabulary: every ``io.tesson.*`` key and every role value, in one place.

Like docker-compose's project label, ``io.tesson.group`` ties a group's containers (and networks)
together; ``io.tesson.role`` tells shards from the frontend's objects. Every container of a group
also carries the group's *spec* (image, command, ports, unit, size, the whole plan, and of the
config only its digest and field names), so ``repair`` can recreate any vanished shard from whatever
is left (the config's values from a surviving shard's inspect): tesson keeps no state file.
"""

from __future__ import annotations

PREFIX = "io.tesson."
GROUP = PREFIX + "group"
ROLE = PREFIX + "role"
SHARD = PREFIX + "shard"
CPUS = PREFIX + "cpus"
MEMS = PREFIX + "mems"
UNIT = PREFIX + "unit"
SIZE = PREFIX + "size"
IMAGE = PREFIX + "image"
COMMAND = PREFIX + "command"  # JSON list; [] = the image's own
PORTS = PREFIX + "ports"  # JSON list of -p specs as typed
CONFIG = PREFIX + "config"  # sha256:HEX digest of the -c body ("" = none); never the body (secrets)
CONFIG_FIELDS = PREFIX + "config.fields"  # JSON list of the -c body's field names (no values)
PLAN = PREFIX + "plan"  # JSON [[cpulist, memlist], ...] by shard index
FRONTEND = PREFIX + "frontend"
VERSION = PREFIX + "version"
RUN = PREFIX + "run"  # a fresh id per run/repair: what one invocation made, for its cleanup
NEAR = PREFIX + "near"  # JSON list of the run --near devices (absent: placed on the whole machine)

# Labels that differ between a group's containers (the rest are the group's own).
PER_SHARD = (ROLE, SHARD, CPUS, MEMS, RUN)

# The embedded balancer's settings, on every container of a group run with it.
LB_METHOD = PREFIX + "lb.method"  # "" = per-protocol default
LB_IMAGE = PREFIX + "lb.image"
LB_CPUS = PREFIX + "lb.cpus"  # "" = unpinned

# Gorb's settings, on every container of a group run with it.
GORB_URI = PREFIX + "gorb.uri"
GORB_METHOD = PREFIX + "gorb.method"

# Values of ROLE.
ROLE_SHARD = "shard"
ROLE_LB = "lb"
ROLE_NETWORK = "network"


def selector(key: str, value: str | None = None) -> str:
    """One term of a Docker ``label`` filter: ``KEY`` (has the label) or ``KEY=VALUE``."""
    return key if value is None else f"{key}={value}"


def filters(group: str | None = None, role: str | None = None, **more: str) -> dict:
    """Docker list filters for tesson's objects: ``filters(group="web", role=ROLE_LB)``.

    ``more`` maps further label keys of this module by attribute name (``run=ID``, ``shard="3"``).
    """
    terms = [selector(GROUP, group)] if group is not None else []
    if role is not None:
        terms.append(selector(ROLE, role))
    for name, value in more.items():
        terms.append(selector(globals()[name.upper()], value))
    return {"label": terms}
