"""The daemon's events for one group's containers, followed in a thread: the one loop tesson's
agents share (the kernel front door's, :mod:`tesson.commands.kernel_agent`; Gorb dr's VIP agent,
:mod:`tesson.commands.vip_agent`).

:func:`follow` starts a daemon thread that subscribes to ``GET /events`` with the filters given
(the group's label, a role) and puts ``(action, container id)`` on a queue for every event whose
action ``keep`` accepts, and two markers of its own: :data:`SUBSCRIBED` once the daemon answered a
subscription, :data:`RECONNECT` when the stream broke (the daemon restarted, say); it subscribes
again a second later. An agent reads the daemon's state again on either marker: whatever happened
while no stream was open came as no event.

Hazards: the stream is a long-lived HTTP answer that any daemon hiccup cuts; the loop never ends
(the agent's process does). The daemon sends the answer's headers a moment before it registers the
subscriber, so an event of that moment could be missed; with ``replay`` the thread asks for the
events since that many seconds before it subscribed (``since``: the daemon replays them from its
in-memory log of recent events, then goes on live, with no gap), and after a break since the last
event it saw (which comes once more). A replayed event is one the agent may have handled already:
what it does on one must be idempotent.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

from tesson import log

SUBSCRIBED = "subscribed"  # a marker: the daemon answered the subscription
RECONNECT = "reconnect"  # a marker: the stream broke, events may have been missed
RETRY = 1.0  # seconds between a broken stream and the next subscription


def follow(client: Any, filters: dict, keep: Callable[[str], bool], replay: float = 0.0) -> queue.Queue:
    """A queue that gets ``(action, container id)`` for every event of ``filters`` whose action
    ``keep`` accepts, and the markers (``(SUBSCRIBED, "")``, ``(RECONNECT, "")``); fed by a daemon
    thread until the process ends. ``client``: docker-py's ``APIClient`` (``events``)."""
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_loop, args=(client, filters, keep, replay, q), daemon=True, name="docker-events").start()
    return q


def _loop(client: Any, filters: dict, keep: Callable[[str], bool], replay: float, q: queue.Queue) -> None:
    since = f"{time.time() - replay:.9f}" if replay else None
    while True:
        log.debug("following the daemon's events", filters=filters)
        try:
            stream = client.events(decode=True, filters=filters, since=since)
            q.put((SUBSCRIBED, ""))
            for ev in stream:
                action = ev.get("Action") or ev.get("status") or ""
                cid = ev.get("id") or (ev.get("Actor") or {}).get("ID") or ""
                log.debug("event", action=action, container=((ev.get("Actor") or {}).get("Attributes") or {}).get("name"))
                if replay and ev.get("timeNano"):
                    since = f"{int(ev['timeNano']) // 10**9}.{int(ev['timeNano']) % 10**9:09d}"
                if keep(action):
                    q.put((action, cid))
        except Exception as e:  # the daemon went away for a moment: the agent checks the state, we listen again
            log.warning("event stream lost", error=str(e))
        if replay and since is None:
            since = f"{time.time() - replay:.9f}"
        q.put((RECONNECT, ""))
        time.sleep(RETRY)


def take(q: queue.Queue, timeout: float) -> list[tuple[str, str]]:
    """What the queue holds: the first item waited for up to ``timeout`` seconds ([] when none
    came), then every item already behind it (a burst of events is handled once)."""
    try:
        items = [q.get(timeout=max(0.0, timeout))]
    except queue.Empty:
        return []
    while not q.empty():
        items.append(q.get_nowait())
    return items
