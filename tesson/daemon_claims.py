"""The groups on the daemon, as claims on CPUs (tesson.holdings), read in one container listing.

``run --dry-run`` and ``topology --groups`` pay for this on every call: one ``docker ps -a``-like
listing through docker-py (its import is most of the cost; see benchmarks/README.md).
"""

from __future__ import annotations

from typing import Any

from tesson import labels as L


def list_containers(client: Any = None) -> tuple[list[dict] | None, str]:
    """Every container carrying ``io.tesson.group`` (summaries, as ``docker ps -a``), and ``""``; or
    ``(None, why)`` when the daemon cannot be reached."""
    from tesson import docker_client
    from tesson.errors import TessonError

    if client is None:
        try:
            client = docker_client.connect()
        except TessonError as e:
            return None, str(e)
    try:
        return client.containers(all=True, filters={"label": [L.GROUP]}), ""
    except Exception as e:
        return None, docker_client.explain(e)


def load(topo, client=None):
    """``(claims, why)``: the claims of every group on the daemon (tesson.holdings.Claim), or
    ``(None, why)`` when no daemon is reachable."""
    from tesson import holdings

    found, why = list_containers(client)
    if found is None:
        return None, why
    return holdings.claims_from_containers(found, topo), ""
