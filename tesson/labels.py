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
# run --exclusive: "packed" or "spread" (absent: a shared-pool group). See tesson.holdings.
EXCLUSIVE = PREFIX + "exclusive"
# The CPUs the group may use as a cpulist (run --cpus, ANDed with --near's CPUs); absent: all allowed.
# A shared group's pins are recomputed from it when exclusive groups come and go (tesson.holdings).
CPUS_RESTRICT = PREFIX + "cpus-restrict"
# run --no-isolated: "1" (absent: the kernel's isolated CPUs count as the group's). The group is planned
# again (repair, scale, the shared pool's re-pins) without them, whatever the re-planning tesson is told.
NO_ISOLATED = PREFIX + "no-isolated"
# The machine the plan was made for (tesson.holdings.machine_id): groups planned from another
# topology (another --fsroot) hold no CPU of this one.
MACHINE = PREFIX + "machine"
LIMITS = PREFIX + "limits"  # JSON list by shard index of HostConfig limits ({"Memory": ..., ...})
# JSON list of the LIMITS keys computed from each shard's CPUs (--memory/--memory-reservation/--cpu-shares
# auto, the config setting none of its own): they follow a shard re-pinned or made again (tesson.quotas).
LIMITS_AUTO = PREFIX + "limits.auto"

# The daemon-side lock of tesson.daemon_lock (a created, never started container).
LOCK_OWNER = PREFIX + "lock.owner"  # "HOSTNAME PID PROCESS-START-TIME" of the holder
GENERATION = PREFIX + "generation"  # on a spec record: which record is newest (scale/update write one)
CHANGE = PREFIX + "change"  # on a group's lock: JSON of the scale/update holding it (verb, by, pid, ...)

# Labels that differ between a group's containers (the rest are the group's own).
PER_SHARD = (ROLE, SHARD, CPUS, MEMS, RUN, GENERATION, CHANGE)

# The embedded balancer's settings, on every container of a group run with it.
LB_METHOD = PREFIX + "lb.method"  # "" = per-protocol default
LB_IMAGE = PREFIX + "lb.image"
LB_CPUS = PREFIX + "lb.cpus"  # "" = unpinned

# Gorb's settings, on every container of a group run with it.
GORB_URI = PREFIX + "gorb.uri"
GORB_METHOD = PREFIX + "gorb.method"
GORB_FORWARD = PREFIX + "gorb.forward"  # IPVS forwarding: nat (absent: nat), dr
MACVLAN_RANGE = PREFIX + "macvlan.range"  # dr: the --macvlan-range CIDR
MACVLAN_PARENT = PREFIX + "macvlan.parent"  # on tesson's macvlan network: its parent device

# Values of ROLE.
ROLE_SHARD = "shard"
ROLE_LB = "lb"
ROLE_NETWORK = "network"
ROLE_SPEC = "spec"  # a created, never started container whose labels are the group's spec (after a scale/update)
# A created, never started container that is a lock: tesson-lock (the daemon's CPUs, tesson.daemon_lock)
# or GROUP-lock (a scale or update of the group is under way; its CHANGE label says whose).
ROLE_LOCK = "lock"
ROLE_MACVLAN = "macvlan"  # a device's macvlan network, shared by the dr groups on it
ROLE_LO_STEP = "lo-step"  # the one-shot step that puts a dr group's service address on a shard's lo
ROLE_VIP_AGENT = "vip-agent"  # GROUP-vip: a dr group's agent, the step again on every start of a shard
ROLE_PROBE = "probe"  # a topology probe container (tesson.probe), gone once it answered


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


def no_isolated(labels: dict) -> bool:
    """Whether the group was made with ``run --no-isolated`` (:data:`NO_ISOLATED`)."""
    return labels.get(NO_ISOLATED) == "1"


def limits_auto(labels: dict) -> list[str]:
    """The limits' keys computed from each shard's CPUs (:data:`LIMITS_AUTO`, a JSON list of
    names); [] when absent. Raises ValueError for text that is not such a list."""
    import json

    keys = json.loads(labels.get(LIMITS_AUTO) or "[]")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"{LIMITS_AUTO} is not a list of names")
    return keys
