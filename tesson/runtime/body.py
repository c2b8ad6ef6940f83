"""One shard's container: its create body, and creating and starting it."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from tesson import cpulist, log
from tesson import labels as L
from tesson.docker_client import explain, remove_container
from tesson.errors import TessonError
from tesson.runtime.pool import Batch, Progress

if TYPE_CHECKING:
    from tesson.frontend import Context, Frontend, Undo
    from tesson.placement import Shard


def _env_merge(env: list[str], ours: dict[str, str], defaults: dict[str, str]) -> list[str]:
    """Merge ``NAME=value`` lists: ``ours`` replace the config's, ``defaults`` only fill gaps."""
    names = [e.split("=", 1)[0] for e in env]
    out = list(env)
    for name, value in ours.items():
        item = f"{name}={value}"
        if name in names:
            out = [item if e.split("=", 1)[0] == name else e for e in out]
        else:
            out.append(item)
    for name, value in defaults.items():
        if name not in names and name not in ours:
            out.append(f"{name}={value}")
    return out


def shard_body(ctx: Context, fe: Frontend, shard: Shard) -> dict:
    """The create body of one shard: the config as given, tesson's fields on top, then the frontend's."""
    if ctx.config is None:
        raise TessonError(f"group {ctx.group}: its config must be recovered first (Context.load_config)")
    body = copy.deepcopy(ctx.config)
    body["Image"] = ctx.image
    if ctx.command:
        body["Cmd"] = list(ctx.command)
    cpus, mems = cpulist.format(shard.cpus), cpulist.format(shard.mems)
    body["Labels"] = {
        **(body.get("Labels") or {}),
        **ctx.labels,
        L.ROLE: L.ROLE_SHARD,
        L.SHARD: str(shard.index),
        L.CPUS: cpus,
        L.MEMS: mems,
    }
    body["Env"] = _env_merge(
        body.get("Env") or [],
        {"TESSON_GROUP": ctx.group, "TESSON_UID": str(shard.index), "TESSON_CPUS": cpus, "TESSON_NCPUS": str(len(shard.cpus))},
        {"GOMAXPROCS": str(len(shard.cpus))},
    )
    host = body.get("HostConfig") or {}
    host["CpusetCpus"] = cpus
    if mems:
        host["CpusetMems"] = mems
    if 0 <= shard.index < len(ctx.limits) and isinstance(ctx.limits[shard.index], dict):
        host.update(ctx.limits[shard.index])  # quotas.limits already let the config's own values win
    if host.get("MemoryReservation"):  # an 'auto' one that followed its CPUs past the config's limit
        from tesson.quotas import hold_reservation

        hold_reservation(host, host.get("Memory"), host["MemoryReservation"])
    if not host.get("RestartPolicy"):
        host["RestartPolicy"] = {"Name": "unless-stopped"}
    body["HostConfig"] = host
    fe.shape_shard(ctx, shard, body)
    return body


def create_shard(ctx: Context, fe: Frontend, shard: Shard, undo: Undo) -> str:
    """Create one shard's container (named ``GROUP-INDEX``) and record its removal in ``undo``."""
    client, name = ctx.docker, ctx.shard_name(shard.index)
    cid = client.create_container_from_config(shard_body(ctx, fe, shard), name=name)["Id"]
    undo.add(f"container {name}", lambda: remove_container(client, cid), batch="containers")
    return cid


def start_shard(ctx: Context, fe: Frontend, shard: Shard, batch: Batch, progress: Progress,
                created: dict[int, str], starts: dict[int, float], undo: Undo) -> None:
    """Create (unless ``created`` has it already) and start one shard, recording its container in
    ``created`` (index -> id, and its removal in ``undo``) and when its start returned in ``starts``
    (the settle check inspects it later)."""
    cid = created.get(shard.index)
    if cid is None:
        batch.check()
        cid = created[shard.index] = create_shard(ctx, fe, shard, undo)
        log.info("shard created", shard=ctx.shard_name(shard.index), id=cid[:12], cpus=cpulist.format(shard.cpus))
    batch.check()
    start_container(ctx.docker, cid)
    starts[shard.index] = time.monotonic()
    log.info("shard started", shard=ctx.shard_name(shard.index), id=cid[:12])
    progress.step()


AMBIGUOUS_WAIT = 5.0  # seconds a start waits out a network name two networks share for a moment


def start_container(client: Any, cid: str) -> None:
    """Start a container, waiting out (a few seconds at most) Docker's ``network NAME is ambiguous``.

    Docker starts a container's networks by name, even one created with the network's id, and two
    runs of one group racing may both have made ``tesson-GROUP``; the one that loses the group's
    name removes its network in its rollback, a moment later."""
    deadline = time.monotonic() + AMBIGUOUS_WAIT
    delay = 0.05
    while True:
        try:
            client.start(cid)
            return
        except Exception as e:
            if "is ambiguous" not in explain(e) or time.monotonic() > deadline:
                raise
            log.info("network name ambiguous at start: waiting", id=cid[:12])
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def shard_error(ctx: Context, shard: Shard, exc: BaseException, doing: str) -> str:
    return f"shard {ctx.shard_name(shard.index)} failed to {doing}: {explain(exc)}"
