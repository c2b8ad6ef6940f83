"""``stop``: stop (with ``--purge``: remove) every container of a group, then its networks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tesson import labels as L
from tesson import log
from tesson.docker_client import explain, remove_container, unless_gone
from tesson.errors import TessonError
from tesson.runtime.pool import MAX_WORKERS, Batch, Progress

if TYPE_CHECKING:
    from tesson.frontend import Context, Frontend


def stop(ctx: Context, fe: Frontend | None, workers: int = MAX_WORKERS) -> list[str]:
    """Stop (with ``ctx.purge``: remove) every container of ``ctx.state`` and, with ``ctx.purge``,
    every network labelled with the group; returns the containers that failed.

    ``fe`` is None for a group whose frontend this tesson cannot load: its containers and networks
    go all the same."""
    client, grp = ctx.docker, ctx.state
    if grp is None:
        raise ValueError("stop needs the group as found on the daemon (Context.for_group)")
    if fe is not None:
        fe.before_stop(ctx)
    progress = Progress(len(grp.container_ids()), "removed" if ctx.purge else "stopped")
    errors: list[str] = []

    def one(cid: str, _batch: Batch) -> None:
        try:
            unless_gone(client.stop, cid, timeout=ctx.timeout)
            if ctx.purge:
                remove_container(client, cid)
        except Exception as e:
            errors.append(f"{cid[:12]}: {explain(e)}")
        progress.step()

    try:  # every container is tried, whatever happens to the others
        Batch(workers, stop_on_error=False).run(one, grp.container_ids())
    finally:
        progress.close()
    if fe is not None:
        fe.after_stop(ctx)
    if ctx.purge:
        purge_networks(ctx, errors)
    return errors


def purge_leftovers(client: Any, group: str, gorb: str | None = None) -> list[str]:
    """``stop --purge`` of a group with no container left (a crashed or raced run, or containers
    removed by hand): remove a kernel front door's nft table and DOCKER-USER accepts (they outlive
    the containers: :func:`_kernel_leftovers`), every network labelled with the group
    and, given a Gorb URI, withdraw the group's Gorb services. Returns what went (``nft table
    tesson-web``, ``network tesson-web``, ``Gorb service web-80-tcp``); TessonError names what
    could not."""
    from tesson.frontend import Context

    gone: list[str] = []
    try:  # first: the bridge's route_localnet goes off while the table still guards it
        gone += _kernel_leftovers(client, group)
        rules = ""
    except TessonError as e:
        rules = str(e)
    purge_networks(Context(group=group, docker=client, purge=True), [], gone)
    if gorb:
        from tesson.frontend.gorb_services import withdraw_group

        gone += [f"Gorb service {vs}" for vs in withdraw_group(gorb, group)]
    if rules:
        did = f"removed {', '.join(gone)}, but " if gone else ""
        raise TessonError(f"group {group}: no container is left; {did}its kernel front door rules could not be "
                          f"looked for: {rules}")
    return gone


def _kernel_leftovers(client: Any, group: str) -> list[str]:
    """A kernel front door's table and DOCKER-USER accepts outlive the group's containers (removed by
    hand) and keep publishing its host ports. They are on the daemon's host, so a one-off of the
    tesson image (``$TESSON_IMAGE``, else tesson:latest; never pulled: without it on the daemon no
    agent of this tesson ran there) removes whatever is left, as the frontend's own purge does.
    Returns what went (``nft table tesson-web``, ``2 DOCKER-USER rules``); TessonError when the
    one-off fails."""
    from tesson import default_image
    from tesson.frontend import Context
    from tesson.frontend.kernel import KernelFrontend
    from tesson.frontend.kernel_rules import table_name

    image = default_image()
    if unless_gone(client.inspect_image, image) is None:
        log.info("no kernel rules to look for: the tesson image is not on the daemon", image=image)
        return []
    said = KernelFrontend((), image)._oneoff(Context(group=group, docker=client), "purge")
    if "rules" not in said:  # an older image's purge, which says removed whether or not there was a table
        return []
    gone = [f"nft table {table_name(group)}"] if said.get("removed") is True else []
    n = int(said.get("rules") or 0)
    if n:
        gone.append(f"{n} DOCKER-USER rule{'s' if n != 1 else ''}")
    return gone


def _holders(client: Any, net_id: str) -> list[str]:
    """The names of the containers attached to a network ([] when it cannot be inspected)."""
    try:
        attached = (client.inspect_network(net_id).get("Containers") or {}).values()
    except Exception:
        return []
    return sorted(c.get("Name") or "?" for c in attached)


def purge_networks(ctx: Context, errors: list[str], removed: list[str] | None = None) -> None:
    """``stop --purge``, after the containers: remove every network labelled with the group (the
    balancer's ``tesson-GROUP``, or any a frontend made). One that stays (a container outside the
    group still attached, say) fails the stop with what is left, what holds it and the docker
    commands that finish the job: the group's containers are gone, so no tesson command finds the
    group any more. ``errors`` are the containers that could not be removed, for that message."""
    client, group = ctx.docker, ctx.group
    left: list[str] = []
    try:
        nets = client.networks(filters=L.filters(group=group))
    except Exception as e:
        nets = []
        left.append(f"its networks could not be listed ({explain(e)}): "
                    f"'docker network ls --filter label={L.selector(L.GROUP, group)}'")
    for net in nets:
        name = net.get("Name") or net["Id"][:12]
        try:
            unless_gone(client.remove_network, net["Id"])
            log.info("network removed", network=name, group=group)
            if removed is not None:
                removed.append(f"network {name}")
            continue
        except Exception as e:
            why = explain(e)
        holders = _holders(client, net["Id"])
        if holders:
            more = " (and each other one)" if len(holders) > 1 else ""
            left.append(f"network {name} was not removed ({why}), it is still used by {', '.join(holders)}: "
                        f"'docker network disconnect {name} {holders[0]}'{more}, then 'docker network rm {name}'")
        else:
            left.append(f"network {name} was not removed ({why}): 'docker network rm {name}'")
    if not left:
        return
    n = len(ctx.state.container_ids()) if ctx.state is not None else 0
    gone = (f"{len(errors)} of {n} containers could not be removed: {'; '.join(errors)}" if errors
            else "its containers are removed" if n else "no container of it is left")
    raise TessonError(f"group {group}: {gone}, but {'; '.join(left)}")
