"""Per-shard limits: ``--memory``, ``--memory-reservation`` and ``--cpu-shares`` (pure; stdlib only).

``auto`` is computed from the topology:

- memory (``--memory auto``, ``--memory-reservation auto``): the shard's share of the memory of its
  NUMA nodes, in proportion to the CPUs it holds there (each node's memory is split over the allowed
  CPUs local to it), *less what the host keeps*. The host keeps what GKE's kubelet reserves for the
  system on a node of that size (``kube-reserved``: 25% of the first 4 GiB, 20% of the next 4 GiB,
  10% of the next 8 GiB, 6% of the next 112 GiB and 2% of the rest; 255 MiB below 1 GiB) plus the
  kubelet's hard eviction threshold (100 MiB): the kernel, dockerd and containerd, sshd, the
  balancer and the page cache live there, and a host whose containers may take it all swaps or
  kills at random. It is taken from each node in proportion to its memory.
- CPU shares (``--cpu-shares auto``): 1024 (Docker's default, one CPU's worth) per CPU of the shard.

A ``-c`` config's own ``HostConfig.Memory`` / ``MemoryReservation`` / ``CpuShares`` win over
``auto``; a size or number given on the command line wins over the config.

Exclusive groups' memory is accounted per NUMA node as Kubernetes' Memory Manager does for
Guaranteed pods: each shard's limit (``Memory``, else ``MemoryReservation``) is split over its
memory nodes in proportion to its CPUs there, and the groups' sums must fit what each node has
after the host's part (:func:`check_fit`). Shared groups are not accounted: they share.

The keys computed by ``auto`` (and not set by the config) are recorded with the group
(``io.tesson.limits.auto``, :func:`auto_keys`), so wherever a shard is re-pinned live (the shared
pool making room for an exclusive group, ``scale``, ``repair``) or made again its limits follow its
new CPUs and memory nodes (:func:`follow`), in the same Docker update as its cpuset
(:func:`update_body`: one call, so the daemon checks the limit, the reservation and the swap
limit together).

Hazards: a machine without NUMA information is one node holding all of /proc/meminfo. The daemon
refuses a reservation above the limit when both are sent, and a limit above the container's swap
limit (Docker set it to twice the limit when the shard was made): :func:`update_body` sends the
three together, keeping the swap allowance the container had.
"""

from __future__ import annotations

import re

from tesson.cpulist import mask_of, weight
from tesson.errors import TessonError, UsageError

MIB = 1 << 20
GIB = 1 << 30
EVICTION = 100 * MIB
KEYS = ("Memory", "MemoryReservation", "CpuShares")  # Engine API HostConfig names
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size as ``docker run --memory`` takes it (``512m``, ``1.5g``, ``2GiB``, bytes; binary
    units); ValueError for anything else."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"bad size {text!r}: use a number with an optional unit b, k, m, g, t (e.g. 512m, 2g)")
    value = float(m.group(1)) * (1024 ** " kmgtp".index(m.group(2).lower() or " "))
    return int(value)


def format_size(nbytes: int) -> str:
    """``1.5GiB``, ``512MiB``, ``12KiB``, ``100B``."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if nbytes >= size:
            v = nbytes / size
            return f"{v:.1f}".rstrip("0").rstrip(".") + unit
    return f"{nbytes}B"


def host_reserve(total: int) -> int:
    """What the host keeps of ``total`` bytes (see the module's doc)."""
    if total < GIB:
        return min(total, 255 * MIB + EVICTION)
    steps = ((4 * GIB, 0.25), (4 * GIB, 0.20), (8 * GIB, 0.10), (112 * GIB, 0.06))
    left, keep = total, 0.0
    for size, rate in steps:
        part = min(left, size)
        keep += part * rate
        left -= part
    keep += left * 0.02
    return min(total, int(keep) + EVICTION)


def node_capacity(topo) -> dict[int, int]:
    """NUMA node id -> the bytes containers may have there (its memory less its part of the host's)."""
    total = sum(n.memory_bytes for n in topo.numa_nodes)
    if total <= 0:
        return {n.id: 0 for n in topo.numa_nodes}
    keep = host_reserve(total)
    return {n.id: max(0, n.memory_bytes - keep * n.memory_bytes // total) for n in topo.numa_nodes}


def _weights(topo, cpus, mems) -> dict[int, int]:
    """Memory node id -> how many of these CPUs are local to it (its locality), for nodes with memory."""
    m = mask_of(cpus)
    return {n.id: weight(n.cpuset & m) for n in topo.numa_nodes if n.id in set(mems) and n.memory_bytes > 0}


def auto_memory(topo, cpus, mems) -> int:
    """The shard's share of its nodes' memory (MiB-rounded down), see the module's doc."""
    cap = node_capacity(topo)
    share = 0
    for n in topo.numa_nodes:
        if n.id in set(mems) and n.memory_bytes > 0 and n.cpuset:
            share += cap[n.id] * weight(n.cpuset & mask_of(cpus)) // weight(n.cpuset)
    if share == 0:  # CPUs local to no memory node of the shard: its share of the whole machine
        share = sum(cap.values()) * len(cpus) // max(1, len(topo.pus))
    return share // MIB * MIB


def split(topo, cpus, mems, nbytes: int) -> dict[int, int]:
    """``nbytes`` over the shard's memory nodes, in proportion to its CPUs local to each (evenly when
    none is): what the Memory Manager would reserve on each."""
    w = _weights(topo, cpus, mems)
    if not w:
        return {}
    total = sum(w.values())
    if total == 0:
        return {k: nbytes // len(w) for k in w}
    return {k: nbytes * v // total for k, v in w.items()}


class Quotas:
    """The limits asked for: each None (not asked), ``"auto"`` or a number (bytes / shares)."""

    __slots__ = ("memory", "reservation", "cpu_shares")

    def __init__(self, memory=None, reservation=None, cpu_shares=None):
        self.memory, self.reservation, self.cpu_shares = memory, reservation, cpu_shares

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.memory, self.reservation, self.cpu_shares))

    def __eq__(self, other):
        return isinstance(other, Quotas) and (self.memory, self.reservation, self.cpu_shares) == (
            other.memory, other.reservation, other.cpu_shares)

    def __hash__(self):
        return hash((self.memory, self.reservation, self.cpu_shares))

    def __repr__(self):  # pragma: no cover
        return f"Quotas(memory={self.memory!r}, reservation={self.reservation!r}, cpu_shares={self.cpu_shares!r})"

    @classmethod
    def parse(cls, memory: str | None, reservation: str | None, cpu_shares: str | None) -> "Quotas":
        """From the options as typed; UsageError (exit 2) for a malformed value."""

        def size(flag, text):
            if text is None or text.strip().lower() == "auto":
                return None if text is None else "auto"
            try:
                v = parse_size(text)
            except ValueError as e:
                raise UsageError(f"{flag}: {e}") from None
            if v < 6 * MIB:
                raise UsageError(f"{flag} {text}: Docker's minimum is 6m")
            return v

        shares = cpu_shares
        if shares is not None and shares.strip().lower() != "auto":
            if not shares.strip().isdigit() or not 2 <= int(shares) <= 262144:
                raise UsageError(f"--cpu-shares {cpu_shares!r}: use auto or a whole number from 2 to 262144")
            share_value: int | str | None = int(shares)
        else:
            share_value = None if shares is None else "auto"
        q = cls(size("--memory", memory), size("--memory-reservation", reservation), share_value)
        if isinstance(q.memory, int) and isinstance(q.reservation, int) and q.reservation > q.memory:
            raise UsageError("--memory-reservation must not be larger than --memory")
        return q


def _shard_limits(topo, s, asked: dict, host: dict) -> dict:
    """One shard's limits: ``asked`` maps each of :data:`KEYS` to "auto", a number, or None."""
    d: dict[str, int] = {}
    mem = None
    for key in ("Memory", "MemoryReservation"):
        want = asked.get(key)
        if want == "auto":
            if host.get(key):
                continue  # the config's own value wins over auto
            mem = auto_memory(topo, s.cpus, s.mems) if mem is None else mem
            d[key] = mem
        elif want is not None:
            d[key] = want
    if asked.get("CpuShares") == "auto":
        if not host.get("CpuShares"):
            d["CpuShares"] = min(262144, 1024 * len(s.cpus))
    elif asked.get("CpuShares") is not None:
        d["CpuShares"] = asked["CpuShares"]
    hold_reservation(d, d.get("Memory", host.get("Memory")), d.get("MemoryReservation", 0))
    return d


def hold_reservation(d: dict, memory: int | None, reservation: int | None) -> None:
    """Set ``d["MemoryReservation"]`` to ``memory`` when ``reservation`` is above that limit (Docker
    refuses a reservation above the memory limit); leave ``d`` alone otherwise."""
    if memory and (reservation or 0) > memory:
        d["MemoryReservation"] = memory


def limits(topo, shards, q: Quotas, config: dict | None = None) -> list[dict]:
    """Each shard's ``HostConfig`` limits (a dict per shard, by index; {} when none)."""
    host = (config or {}).get("HostConfig") or {}
    asked = dict(zip(KEYS, (q.memory, q.reservation, q.cpu_shares)))
    return [_shard_limits(topo, s, asked, host) for s in shards]


def auto_keys(q: Quotas | None, config: dict | None = None) -> list[str]:
    """The keys of :data:`KEYS` that :func:`limits` computes from each shard's CPUs ("auto" asked,
    and the config does not set its own): what follows a shard to other CPUs."""
    if not q:
        return []
    host = (config or {}).get("HostConfig") or {}
    return [k for k, v in zip(KEYS, (q.memory, q.reservation, q.cpu_shares)) if v == "auto" and not host.get(k)]


def follow(topo, shards, auto, before) -> list[dict]:
    """Each shard's limits where it is now: the ``auto`` keys computed again for its CPUs and memory
    nodes, the other keys as they were (``before``, by index; a shard beyond them, made by a
    scale, takes shard 0's: the command line's sizes were the same for all)."""
    out = []
    for s in shards:
        was = before[s.index] if 0 <= s.index < len(before) else before[0] if before else {}
        was = was if isinstance(was, dict) else {}
        asked = {k: ("auto" if k in auto else was.get(k)) for k in KEYS}
        out.append(_shard_limits(topo, s, asked, {}))
    return out


def update_body(host: dict, want: dict) -> dict:
    """The ``HostConfig`` values one Docker update sends to give a container (whose ``HostConfig``
    is ``host`` now) the limits ``want`` (only the keys of :data:`KEYS` it names). With a new
    ``Memory`` also ``MemorySwap``: the swap allowance is kept (Docker's default, twice the limit,
    stays twice the new one; unlimited, -1, stays as it is). ``MemoryReservation`` is held to the
    limit the container will have."""
    out = {k: int(want[k]) for k in KEYS if want.get(k)}
    memory = out.get("Memory") or int(host.get("Memory") or 0)
    if "Memory" in out:
        old_mem, old_swap = int(host.get("Memory") or 0), int(host.get("MemorySwap") or 0)
        if old_swap > 0 and old_mem > 0:
            out["MemorySwap"] = 2 * memory if old_swap == 2 * old_mem else memory + max(0, old_swap - old_mem)
    # held to the new limit: the one asked, or the container's own when a smaller 'auto' Memory
    # comes without a reservation of its own (a fixed --memory-reservation above it: Docker refuses)
    hold_reservation(out, memory, out.get("MemoryReservation", int(host.get("MemoryReservation") or 0)))
    return out


def current(host: dict, keys) -> dict:
    """The values of ``keys`` (and ``MemorySwap`` and ``MemoryReservation`` with ``Memory``: the
    update may hold the reservation to a smaller limit) a container's ``HostConfig`` has now: what
    an undo of :func:`update_body` sends back."""
    keys = list(keys) + (["MemorySwap", "MemoryReservation"] if "Memory" in keys else [])
    return {k: int(host.get(k) or 0) for k in keys}


def _reserved(limit: dict, config_host: dict | None = None) -> int:
    return int(limit.get("Memory") or limit.get("MemoryReservation") or 0)


def node_use(topo, groups) -> dict[int, list[tuple[str, int]]]:
    """Node id -> ``[(group, bytes), ...]`` for ``groups``: ``(name, shards, limits)`` triples."""
    out: dict[int, list[tuple[str, int]]] = {}
    for name, shards, lims in groups:
        per: dict[int, int] = {}
        for s, lim in zip(shards, lims):
            for node, b in split(topo, s.cpus, s.mems, _reserved(lim)).items():
                per[node] = per.get(node, 0) + b
        for node, b in per.items():
            if b:
                out.setdefault(node, []).append((name, b))
    return out


def check_fit(topo, group: str, shards, lims, others) -> None:
    """Refuse (TessonError) an exclusive group whose memory does not fit its NUMA nodes next to the
    other exclusive groups' (``others``: ``(name, shards, limits)`` triples)."""
    cap = node_capacity(topo)
    used = node_use(topo, others)
    mine = node_use(topo, [(group, shards, lims)])
    for node, parts in sorted(mine.items()):
        want = sum(b for _, b in parts)
        held = used.get(node, [])
        free = cap.get(node, 0) - sum(b for _, b in held)
        if want > free:
            who = ", ".join(f"{g} {format_size(b)}" for g, b in held) or "no other exclusive group"
            raise TessonError(
                f"group {group}'s memory does not fit NUMA node {node}: it needs {format_size(want)} there, "
                f"{format_size(max(0, free))} of {format_size(cap.get(node, 0))} is free for exclusive groups "
                f"(held: {who}; the host keeps {format_size(host_reserve(sum(n.memory_bytes for n in topo.numa_nodes)))} "
                f"of the machine): ask for less --memory, fewer shards (-n), or stop a group"
            )


def describe(limit: dict) -> str:
    """``mem=1.5GiB res=1GiB shares=2048`` (``-`` for none): ps's LIMITS column."""
    parts = []
    if limit.get("Memory"):
        parts.append(f"mem={format_size(limit['Memory'])}")
    if limit.get("MemoryReservation"):
        parts.append(f"res={format_size(limit['MemoryReservation'])}")
    if limit.get("CpuShares"):
        parts.append(f"shares={limit['CpuShares']}")
    return " ".join(parts) or "-"
