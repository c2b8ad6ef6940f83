"""The groups on the daemon, as claims on CPUs (tesson.holdings), read in one container listing.

``run --dry-run`` and ``topology --groups`` pay for this on every call, so on the local socket
(tesson.engine_lite.local_socket) the listing is made with the standard library's client
(:mod:`tesson.engine_lite`: importing docker-py and requests, or even http.client, costs more than
the whole plan). Any other daemon goes through docker-py as usual.
"""

from __future__ import annotations

from tesson import labels as L

TIMEOUT = 10.0


def list_containers(client=None) -> tuple[list[dict] | None, str]:
    """Every container carrying ``io.tesson.group`` (summaries, as ``docker ps -a``), and ``""``; or
    ``(None, why)`` when the daemon cannot be reached."""
    filters = {"label": [L.GROUP]}
    if client is None:
        from tesson import engine_lite

        path = engine_lite.local_socket()
        if path is not None:
            try:
                return _lite_listing(engine_lite, path, filters), ""
            except OSError as e:  # ConnectionLost, its cause the socket's error when there is one
                cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
                return None, f"{path}: {cause.strerror or cause}"
            except engine_lite.APIError as e:
                return None, f"{path}: the daemon answered {e.status_code}"
        from tesson import docker_client
        from tesson.errors import TessonError

        try:
            client = docker_client.connect()
        except TessonError as e:
            return None, str(e)
    try:
        return client.containers(all=True, filters=filters), ""
    except Exception as e:
        from tesson.docker_client import explain

        return None, explain(e)


def _lite_listing(engine_lite, path: str, filters: dict) -> list[dict]:
    """The listing on the local socket in one request: an unversioned ``/containers/json``, which
    the daemon serves at its current API version (the one ``/_ping`` would name, so the same
    summaries as a versioned listing: compared on Docker 20.10 by tests/test_engine_lite.py), where
    asking the version first costs a second round trip. The Engine API calls unversioned paths
    deprecated: a daemon that stops serving them (400 or 404: a listing has no other reason for
    either) gets the versioned listing."""
    try:
        return engine_lite.Client(path, TIMEOUT, engine_lite.UNVERSIONED).containers(all=True, filters=filters)
    except engine_lite.APIError as e:
        if e.status_code not in (400, 404):
            raise
    return engine_lite.Client(path, TIMEOUT).containers(all=True, filters=filters)


def load(topo, client=None):
    """``(claims, why)``: the claims of every group on the daemon (tesson.holdings.Claim), or
    ``(None, why)`` when no daemon is reachable."""
    from tesson import holdings

    found, why = list_containers(client)
    if found is None:
        return None, why
    return holdings.claims_from_containers(found, topo), ""
