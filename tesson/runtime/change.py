"""``scale`` and ``update``: the group's lock, its spec record, and the change itself.

A group's containers carry its spec in their labels, and labels never change: a shard re-pinned
live keeps the labels it was made with, and after a scale down no container says the new size.
So a change writes the group's new spec into a *record*: a container that is created and never
started (``GROUP-spec.GEN``, role ``spec``, its labels the spec, ``io.tesson.generation`` GEN);
:func:`tesson.group.list_groups` takes the newest record's labels as the group's. The record is
written *before* the converge, so a change cut short leaves a group whose spec is its target and
whose shards ``repair`` (or the same command again) brings there; an update that stops at a
failing shard writes the previous spec back (the shards it replaced are then shown as not on the
group's spec, and ``--rollback all`` or another update brings them in line).

The lock is one more created-only container, ``GROUP-lock`` (role ``lock``): creating it is atomic
on the daemon (a second create is a 409), and its ``io.tesson.change`` label says who holds it
(user, host, pid, since when, what change), which is what ``ps`` shows and a refused second
change names. One left by a process that died on this host is taken over; one from elsewhere is
named with the ``docker rm`` that frees it. It is local to the group (issue 12's daemon-wide lock
is another container, another name).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from tesson import labels as L
from tesson import log, names
from tesson.container import Container
from tesson.docker_client import explain, is_status, remove_container, unless_gone
from tesson.errors import TessonError

if TYPE_CHECKING:
    from tesson.group import Group
    from tesson.spec import Spec


class GroupBusy(TessonError):
    """Another scale or update holds the group's lock (exit 1)."""


def _created_only(client: Any, name: str, image: str, labels: dict) -> str:
    """Create (never start) a container that only carries labels; its id. Raises the daemon's error."""
    body = {"Image": image, "Cmd": ["true"], "Labels": labels,
            "HostConfig": {"NetworkMode": "none", "RestartPolicy": {"Name": "no"}}}
    return client.create_container_from_config(body, name=name)["Id"]


def describe_change(change: dict) -> str:
    """``update to web:2 by root@host (pid 123) since 10:04:05``."""
    what = change.get("verb", "change")
    if what == "update":
        what += f" to {change.get('image')}"
    elif what == "scale":
        what += f" {change.get('from')}->{change.get('to')}"
    since = time.strftime("%H:%M:%S", time.localtime(change["since"])) if change.get("since") else "?"
    return f"{what} by {change.get('by', '?')} (pid {change.get('pid', '?')}) since {since}"


def _stale(change: dict) -> bool:
    """The holder ran on this host and its process is gone."""
    if change.get("host") != socket.gethostname() or not change.get("pid"):
        return False
    try:
        os.kill(int(change["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def check_unlocked(grp: Group) -> bool:
    """GroupBusy when a live change holds the group; True when a stale lock is left (a holder that
    died on this host: the caller may take it over)."""
    change = grp.change
    if change is None:
        return False
    if _stale(change):
        return True
    raise GroupBusy(
        f"group {grp.name!r} is being changed: {describe_change(change)}; wait for it to end, or, if that "
        f"process is gone, 'docker rm {names.lock_name(grp.name)}' and 'tesson repair -g {grp.name}'"
    )


def acquire(client: Any, grp: Group, verb: str, **detail: Any) -> str:
    """Take the group's lock for ``verb``; its container id. GroupBusy when held."""
    user = getpass.getuser() if hasattr(os, "getuid") else "?"
    change = {"verb": verb, "by": f"{user}@{socket.gethostname()}", "host": socket.gethostname(),
              "pid": os.getpid(), "since": time.time(), **detail}
    labels = {**grp.labels, L.ROLE: L.ROLE_LOCK, L.CHANGE: json.dumps(change, sort_keys=True)}
    name = names.lock_name(grp.name)
    for attempt in (1, 2):
        try:
            return _created_only(client, name, grp.image, labels)
        except Exception as e:
            if not is_status(e, 409) or attempt == 2:
                raise TessonError(f"group {grp.name!r}: could not take its lock {name}: {explain(e)}") from None
        found = unless_gone(client.inspect_container, name)
        held = json.loads(Container(found).labels.get(L.CHANGE) or "{}") if found else {}
        if found and Container(found).labels.get(L.GROUP) != grp.name:
            raise TessonError(f"a container named {name} exists and is not tesson's: remove or rename it")
        if found and not _stale(held):
            raise GroupBusy(f"group {grp.name!r} is being changed: {describe_change(held)} "
                            f"(its lock is {name}: 'docker rm {name}' if that process is gone)")
        if found:
            log.warning("taking over a lock its holder left", group=grp.name, holder=describe_change(held))
            remove_container(client, found["Id"])
    raise AssertionError("unreachable")


def release(client: Any, lock_id: str) -> None:
    try:
        remove_container(client, lock_id)
    except Exception as e:  # the change is done; a lock left is reported, and taken over next time
        log.warning("could not remove the group's lock", error=explain(e))


def release_stale(client: Any, grp: Group) -> None:
    """``repair`` of a group whose change died: drop the lock once the repair is done."""
    lock = grp.lock
    if lock is not None and grp.change is not None and _stale(grp.change):
        release(client, lock.id)


def write_record(client: Any, grp: Group, spec: Spec) -> None:
    """Make ``spec`` the group's (a record one generation newer), then drop the older records."""
    from tesson.group import generation

    records = grp.records
    gen = max((generation(r.labels) for r in records), default=0) + 1
    keep = {k: v for k, v in grp.labels.items() if k not in L.PER_SHARD}
    labels = {**keep, **spec.labels(), L.ROLE: L.ROLE_SPEC, L.GENERATION: str(gen)}
    name = names.spec_name(grp.name, gen)
    try:
        cid = _created_only(client, name, spec.image, labels)
    except Exception as e:
        raise TessonError(f"group {grp.name!r}: could not record its new spec: {explain(e)}") from None
    for r in records:
        try:
            remove_container(client, r.id)
        except Exception as e:  # the newest record wins: an old one left is only clutter
            log.warning("could not remove an old spec record", record=r.name, error=explain(e))
    new = Container({"Id": cid, "Names": [f"/{name}"], "Labels": labels, "State": "created"})
    grp.others = [c for c in grp.others if c.role != L.ROLE_SPEC] + [new]
    grp.labels = {k: v for k, v in labels.items() if k not in L.PER_SHARD}
    grp.spec = spec
