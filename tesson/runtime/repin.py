"""Live re-pins of shared groups' shards (``docker update --cpuset-cpus --cpuset-mems``): no restart,
the container and its start time stay. All or nothing: a re-pin the daemon refuses rolls back the
ones already done, newest first, and fails with one line.

``scale``/``update`` may reuse :func:`apply` with moves of their own (tesson.holdings.Move).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tesson import cpulist, log
from tesson.docker_client import explain, unless_gone
from tesson.errors import TessonError

if TYPE_CHECKING:
    from tesson.frontend import Undo
    from tesson.holdings import Move


# HostConfig key -> docker-py's update_container argument
_ARGS = {"Memory": "mem_limit", "MemorySwap": "memswap_limit", "MemoryReservation": "mem_reservation",
         "CpuShares": "cpu_shares"}


def container(client: Any, cid: str, cpus: Sequence[int], mems: Sequence[int], limits: dict | None = None) -> dict:
    """Move a container to other CPUs and memory nodes *live*: Docker's container update of
    ``CpusetCpus``/``CpusetMems`` (the cgroup's cpuset is rewritten; no restart, same container,
    same processes; the kernel migrates its threads at their next scheduling). Memory already
    allocated stays where it is (``cpuset.memory_migrate`` is off); the shard's ``TESSON_CPUS``/
    ``GOMAXPROCS`` environment keeps the values it started with, and its labels the CPUs it was
    made on (``ps`` reads the container's pinning when they differ from the plan). Shared by
    ``scale`` and the shared pool's re-pins (:func:`apply`).

    ``limits`` (``Memory``, ``MemoryReservation``, ``CpuShares``: the 'auto' ones, computed for the
    new CPUs) go in the same update (tesson.quotas.update_body, after one inspect for the swap
    limit). Returns the limits the container had before ({} without ``limits``), for an undo.
    Raises what the daemon raises."""
    body: dict[str, Any] = {"cpuset_cpus": cpulist.format(cpus)}
    if mems:
        body["cpuset_mems"] = cpulist.format(mems)
    before: dict = {}
    if limits:
        from tesson import quotas

        host = client.inspect_container(cid).get("HostConfig") or {}
        send = quotas.update_body(host, limits)
        before = quotas.current(host, [k for k in send if k != "MemorySwap"])
        body.update({_ARGS[k]: v for k, v in send.items()})
    client.update_container(cid, **body)
    log.info("shard re-pinned", id=cid[:12], **{k.split("_")[-1]: v for k, v in body.items()})
    return before


def restore_limits(client: Any, cid: str, before: dict) -> None:
    """Put back what :func:`container` returned (the limits before a re-pin)."""
    if before:
        client.update_container(cid, **{_ARGS[k]: v for k, v in before.items() if v})


def _update(client: Any, cid: str, cpus: Sequence[int], mems: Sequence[int], limits: dict | None = None) -> dict:
    # a container gone meanwhile needs no pins
    return unless_gone(container, client, cid, cpus, mems, limits) or {}


def _back(client: Any, cid: str, m: Move, before: dict) -> None:
    _update(client, cid, m.old_cpus, m.old_mems)
    if before:
        unless_gone(restore_limits, client, cid, before)


def _putback(client: Any, cid: str, m: Move, before: dict) -> Callable[[], None]:
    """An undo step: the container's pins (and limits) as they were before ``m``."""
    return lambda: _back(client, cid, m, before)


def apply(client: Any, moves: list[Move], undo: Undo | None = None) -> int:
    """Re-pin every container of every move; returns how many were re-pinned. On a refusal the done
    ones go back and TessonError names the shard, the daemon's reason and the rollback. With
    ``undo``, each re-pin is recorded there (to go back if the caller's later steps fail)."""
    done: list[tuple[str, Move, dict]] = []
    for m in moves:
        for cid in m.containers:
            try:
                before = _update(client, cid, m.cpus, m.mems, m.limits)
            except Exception as e:
                failed = []
                for cid2, m2, before2 in reversed(done):
                    try:
                        _back(client, cid2, m2, before2)
                    except Exception as e2:
                        failed.append(f"{m2.group}/{m2.index} ({explain(e2)})")
                back = (f"; could not put back {', '.join(failed)}" if failed
                        else f"; the {len(done)} re-pin{'s' if len(done) != 1 else ''} done were rolled back" if done else "")
                raise TessonError(
                    f"the daemon refused to re-pin shard {m.index} of shared group {m.group} onto CPUs "
                    f"{cpulist.format(m.cpus)}: {explain(e)}{back}"
                ) from None
            done.append((cid, m, before))
            log.info("shard re-pinned", group=m.group, shard=m.index, cpus=cpulist.format(m.cpus),
                     was=cpulist.format(m.old_cpus), **({"limits": m.limits} if m.limits else {}))
            if undo is not None:
                undo.add(f"re-pin {m.group}/{m.index}", _putback(client, cid, m, before))
    return len(done)
