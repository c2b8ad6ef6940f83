"""A lock that lives on the Docker daemon: so two ``run``s never plan on the same free CPUs.

tesson keeps no state and may run in a container, so the lock cannot be a file: it is a container
named ``tesson-lock``, created (never started) from the image the run already has, labelled with
``io.tesson.role=lock`` and its holder (``io.tesson.lock.owner``: host name, pid and the process's
start time). Docker refuses a second container of the same name atomically (409 Conflict): the one
whose create succeeds holds the lock, until it removes the container by id. (Network names are not
unique on every daemon version, so a network would not do.)

Who takes it: every ``run`` (the plan depends on what exclusive groups hold, and an exclusive one
re-pins shared groups), from reading the groups until its shards are started; and ``stop --purge``
of an exclusive group, while it gives the CPUs back. ``--dry-run`` and ``ps`` never do.

Timeout and recovery: a waiter polls for up to ``TESSON_LOCK_WAIT`` seconds (default 120: a big
group's run holds it for its whole start), then fails with one line naming the holder and
the fix. A lock whose holder died is taken over at once: the holder ran on this host (same host
name) and its pid is gone or is another process now; or the lock is older than
``TESSON_LOCK_STALE`` seconds (default 900: no run takes that long; a holder on another host
cannot be checked otherwise). Taking over removes *that* container, by id, and creates a new one:
of two waiters that both found it stale, one wins the create and the other waits again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

from tesson import labels as L
from tesson import log
from tesson.docker_client import explain, is_status, remove_container, unless_gone
from tesson.errors import TessonError

NAME = "tesson-lock"
WAIT = float(os.environ.get("TESSON_LOCK_WAIT") or 120)
STALE = float(os.environ.get("TESSON_LOCK_STALE") or 900)
POLL = 0.1


def _start_time(pid: int) -> str:
    try:
        import psutil

        return f"{psutil.Process(pid).create_time():.2f}"
    except Exception:
        return "?"


def owner() -> str:
    """This process, as the lock names its holder."""
    return f"{socket.gethostname()} {os.getpid()} {_start_time(os.getpid())}"


def holder_dead(owner_label: str, created_age: float, stale: float = STALE) -> str:
    """Why the lock's holder is taken as dead ("" when it may be alive)."""
    parts = (owner_label or "").split()
    if created_age > stale:
        return f"older than {stale:.0f} s"
    if len(parts) == 3 and parts[0] == socket.gethostname() and parts[1].isdigit():
        pid = int(parts[1])
        try:
            import psutil

            if not psutil.pid_exists(pid):
                return f"its holder, pid {pid} on this host, is gone"
            if parts[2] != "?" and _start_time(pid) not in ("?", parts[2]):
                return f"pid {pid} on this host is another process now"
        except Exception:
            return ""
    return ""


def _age(inspect: dict) -> float:
    import calendar

    created = (inspect.get("Created") or "").rstrip("Z")
    try:
        day, _, frac = created.partition(".")
        t = calendar.timegm(time.strptime(day, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac[:6] or "0"))
    except ValueError:
        return 0.0
    return time.time() - t


@contextlib.contextmanager
def held(client, image: str, wait: float | None = None, stale: float | None = None):
    """Hold the daemon's lock for the ``with`` block (``image``: any image the daemon has)."""
    wait = WAIT if wait is None else wait
    stale = STALE if stale is None else stale
    deadline = time.monotonic() + wait
    me = owner()
    labels = {L.ROLE: L.ROLE_LOCK, L.LOCK_OWNER: me}
    cid = None
    seen = ""
    while cid is None:
        try:
            cid = client.create_container(image, command=["tesson-lock"], name=NAME, labels=labels,
                                          entrypoint=[], network_disabled=True)["Id"]
            break
        except Exception as e:
            if not is_status(e, 409):
                raise TessonError(f"cannot take the daemon's lock (container {NAME}): {explain(e)}") from None
        found = unless_gone(client.inspect_container, NAME)
        if found is None:
            continue  # released meanwhile
        who = (found.get("Config", {}).get("Labels") or {}).get(L.LOCK_OWNER, "")
        why = holder_dead(who, _age(found), stale)
        if why:
            log.warning("taking over the daemon's lock", holder=who, why=why)
            with contextlib.suppress(Exception):
                remove_container(client, found["Id"])
            continue
        seen = who
        if time.monotonic() > deadline:
            raise TessonError(
                f"another tesson holds the daemon's lock (container {NAME}, holder {seen or 'unknown'}) "
                f"and did not let go within {wait:.0f} s: try again later, or, if that tesson is dead, "
                f"'docker rm {NAME}' (TESSON_LOCK_WAIT sets the wait)"
            )
        time.sleep(POLL)
    log.info("lock taken", lock=NAME, id=cid[:12])
    try:
        yield cid
    finally:
        try:
            remove_container(client, cid)
        except Exception as e:  # the next run finds it stale at worst
            log.warning("could not remove the daemon's lock", lock=NAME, error=explain(e))
