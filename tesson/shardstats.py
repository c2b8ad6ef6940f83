"""Resource use of a group's shards, from the Docker stats API, and how busy each pinned CPU is.

Per shard: CPU % (as ``docker stats``: 100% is one whole CPU), its pinned CPUs, memory, net I/O,
and the figure that shows whether the sharding works: **how much of each of its pinned CPUs the
shard itself keeps busy**.

Where that figure comes from: the container's own cgroup, not the host. With cgroup v1 the kernel
counts every cgroup's CPU time per CPU (``cpuacct.usage_percpu``, nanoseconds), and Docker's stats
API passes it on as ``cpu_stats.cpu_usage.percpu_usage`` (indexed by CPU number) with the previous
sample beside it (``precpu_stats``). The share of CPU ``c`` the shard used between two samples is

    (percpu[c] - prepercpu[c]) / ((system - presystem) / online_cpus)

where ``system_cpu_usage`` is the host's total CPU time over all its online CPUs (the denominator
``docker stats`` itself uses for CPU %), so ``(system - presystem) / online_cpus`` is the time
that elapsed on one CPU. This is attributable to the shard alone (another group busy on the same
CPU does not count), works through a remote daemon (no file of the host is read), and shows a
shard that leaks onto CPUs outside its pinning (reported as ``elsewhere``). The host's
``/proc/stat`` was the other candidate: it tells how busy a CPU is for everybody, which says
nothing about whether *this* shard uses *its* CPUs.

Hazard: cgroup v2 has no per-CPU accounting for a cgroup (``cpu.stat`` has one total), and Docker
then sends no ``percpu_usage``; the per-CPU figure is then shown as ``-`` rather than guessed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tesson import cpulist


@dataclass
class Usage:
    """One shard's use over one sampling interval (None where the daemon gave no figure)."""

    index: int
    name: str
    cpus: tuple  # the CPUs it is pinned to
    cpu_percent: float | None = None
    per_cpu: dict = field(default_factory=dict)  # pinned CPU -> % of that CPU this shard kept busy
    elsewhere: float | None = None  # % of one CPU used outside its pinning
    mem_usage: int | None = None
    mem_limit: int | None = None
    net_rx: int | None = None
    net_tx: int | None = None
    pids: int | None = None

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "cpus": cpulist.format(self.cpus),
            "cpu_percent": _round(self.cpu_percent),
            "per_cpu": {str(c): _round(v) for c, v in self.per_cpu.items()},
            "elsewhere_percent": _round(self.elsewhere),
            "mem_usage": self.mem_usage,
            "mem_limit": self.mem_limit,
            "net_rx": self.net_rx,
            "net_tx": self.net_tx,
            "pids": self.pids,
        }


def _round(v):
    return None if v is None else round(v, 2)


def usage(index: int, name: str, cpus: tuple, doc: dict) -> Usage:
    """A stats API document (with its previous sample) into :class:`Usage`; pure."""
    u = Usage(index, name, tuple(cpus))
    cur, pre = doc.get("cpu_stats") or {}, doc.get("precpu_stats") or {}
    cu, pu = cur.get("cpu_usage") or {}, pre.get("cpu_usage") or {}
    percpu, prepercpu = cu.get("percpu_usage") or [], pu.get("percpu_usage") or []
    online = cur.get("online_cpus") or len(percpu) or 0
    system = (cur.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    if pre.get("system_cpu_usage") and system > 0 and online:
        u.cpu_percent = max(0.0, (cu.get("total_usage", 0) - pu.get("total_usage", 0)) / system * online * 100)
        one_cpu = system / online  # ns that passed on each CPU between the samples
        if percpu and len(prepercpu) == len(percpu):
            busy = {c: max(0.0, (percpu[c] - prepercpu[c]) / one_cpu * 100) for c in range(len(percpu))}
            u.per_cpu = {c: busy.get(c, 0.0) for c in u.cpus}
            u.elsewhere = sum(v for c, v in busy.items() if c not in u.cpus)
    mem = doc.get("memory_stats") or {}
    if "usage" in mem:
        st = mem.get("stats") or {}
        # what `docker stats` shows: the usage less the page cache the kernel can drop at once
        inactive = st.get("total_inactive_file", st.get("inactive_file", 0))
        u.mem_usage = mem["usage"] - inactive if inactive < mem["usage"] else mem["usage"]
        u.mem_limit = mem.get("limit")
    nets = doc.get("networks")
    if nets is not None:
        u.net_rx = sum(n.get("rx_bytes", 0) for n in nets.values())
        u.net_tx = sum(n.get("tx_bytes", 0) for n in nets.values())
    u.pids = (doc.get("pids_stats") or {}).get("current")
    return u


def sample(client, targets: list) -> list[Usage]:
    """One interval's use of every shard, in parallel: the daemon takes two samples about a
    second apart for each (``docker stats --no-stream``). A shard that is not running gets an
    empty Usage."""
    from tesson import shardio

    def one(t) -> Usage:
        if not t.up:
            return Usage(t.index, t.name, t.cpus)
        try:
            return usage(t.index, t.name, t.cpus, client.stats(t.id, stream=False))
        except Exception as e:
            from tesson.docker_client import is_status

            if is_status(e, 404, 409):
                return Usage(t.index, t.name, t.cpus)
            raise

    return shardio.parallel(one, targets)


class Streams:
    """Every shard's stats stream, each read by its own thread; :meth:`latest` is the last sample
    of each (``docker stats`` without ``--no-stream``)."""

    def __init__(self, client, targets: list) -> None:
        self.targets = list(targets)
        self._latest: dict[int, Usage] = {t.index: Usage(t.index, t.name, t.cpus) for t in self.targets}
        self._lock = threading.Lock()
        for t in self.targets:
            if t.up:
                threading.Thread(target=self._pump, args=(client, t), daemon=True, name=f"stats-{t.name}").start()

    def _pump(self, client, t) -> None:
        try:
            for doc in client.stats(t.id, decode=True, stream=True):
                u = usage(t.index, t.name, t.cpus, doc)
                with self._lock:
                    self._latest[t.index] = u
        except Exception:  # the container went away: its row keeps its last figures
            return

    def latest(self) -> list[Usage]:
        with self._lock:
            return [self._latest[t.index] for t in self.targets]


# --- display ----------------------------------------------------------------------------------


def _size(n: int | None, binary: bool) -> str:
    """Docker's units: memory in binary (KiB, MiB), network in decimal (kB, MB)."""
    if n is None:
        return "-"
    base, units = (1024.0, ("B", "KiB", "MiB", "GiB", "TiB")) if binary else (1000.0, ("B", "kB", "MB", "GB", "TB"))
    v = float(n)
    for unit in units:
        if v < base or unit == units[-1]:
            return f"{v:.0f}{unit}" if unit == "B" else f"{v:.2f}{unit}" if v < 10 else f"{v:.1f}{unit}"
        v /= base
    return f"{n}B"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def per_cpu_text(u: Usage) -> str:
    """``cpu0 97% cpu1 3%`` (and ``elsewhere 2%`` when the shard ran outside its CPUs)."""
    if not u.per_cpu:
        return "-"
    text = " ".join(f"cpu{c} {v:.0f}%" for c, v in u.per_cpu.items())
    if u.elsewhere is not None and u.elsewhere >= 0.5:
        text += f" elsewhere {u.elsewhere:.0f}%"
    return text


def table(rows: list[Usage]) -> str:
    out = [("SHARD", "NAME", "CPUS", "CPU %", "BUSY PER PINNED CPU", "MEM USAGE / LIMIT", "NET I/O", "PIDS")]
    for u in rows:
        mem = "-" if u.mem_usage is None else f"{_size(u.mem_usage, True)} / {_size(u.mem_limit, True)}"
        net = "-" if u.net_rx is None else f"{_size(u.net_rx, False)} / {_size(u.net_tx, False)}"
        out.append((str(u.index), u.name, cpulist.format(u.cpus), _pct(u.cpu_percent), per_cpu_text(u), mem, net,
                    "-" if u.pids is None else str(u.pids)))
    widths = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in out)
