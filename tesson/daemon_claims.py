"""The groups on the daemon, as claims on CPUs (tesson.holdings), read in one container listing.

``run --dry-run`` and ``topology --groups`` pay for this on every call, so on the local socket
(tesson.engine_lite.local_socket) the listing is made with the standard library's client
(:mod:`tesson.engine_lite`: importing docker-py and requests, or even http.client, costs more than
the whole plan). Any other daemon goes through docker-py as usual.
"""

from __future__ import annotations

from tesson import labels as L

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    from collections.abc import Callable

TIMEOUT = 10.0
FILTERS = {"label": [L.GROUP]}


class Listing:
    """The listing of tesson's containers, asked of the daemon at once and read by :meth:`result`:
    on the local socket the request is sent when the Listing is made, so the daemon lists (on another
    CPU) while the caller reads the topology (``run --dry-run`` makes it first; the daemon's answer,
    6-12 ms for 60 containers here, then costs nothing). Elsewhere (docker-py) it is asked in
    :meth:`result`."""

    def __init__(self, client=None) -> None:
        self.client, self._why, self.path = client, "", ""
        self._answer: Callable[[], list[dict]] | None = None
        self._result: tuple[list[dict] | None, str] | None = None
        if client is not None:
            return
        from tesson import engine_lite

        path = engine_lite.local_socket()
        if path is None:
            return
        self.path = path
        try:
            self._answer = engine_lite.Client(path, TIMEOUT, engine_lite.UNVERSIONED).containers_later(
                all=True, filters=FILTERS)
        except OSError as e:
            self._why = _unreachable(path, e)

    def result(self) -> tuple[list[dict] | None, str]:
        """Every container carrying ``io.tesson.group`` (summaries, as ``docker ps -a``), and ``""``;
        or ``(None, why)`` when the daemon cannot be reached. The answer is read once (later calls
        give the same)."""
        if self._result is None:
            self._result = self._read()
        return self._result

    def _read(self) -> tuple[list[dict] | None, str]:
        if self._why:
            return None, self._why
        if self._answer is not None:
            return self._lite(self._answer)
        client = self.client
        if client is None:
            from tesson import docker_client
            from tesson.errors import TessonError

            try:
                client = docker_client.connect()
            except TessonError as e:
                return None, str(e)
        try:
            return client.containers(all=True, filters=FILTERS), ""
        except Exception as e:
            from tesson.docker_client import explain

            return None, explain(e)

    def _lite(self, answer: Callable[[], list[dict]]) -> tuple[list[dict] | None, str]:
        """The answer to the unversioned listing sent at the start, which the daemon serves at its
        current API version (the one ``/_ping`` would name, so the same summaries as a versioned
        listing: compared on Docker 20.10 by tests/test_engine_lite.py), where asking the version
        first costs a second round trip. The Engine API calls unversioned paths deprecated: a daemon
        that stops serving them (400 or 404: a listing has no other reason for either) gets the
        versioned listing."""
        from tesson import engine_lite

        try:
            try:
                return answer(), ""
            except engine_lite.APIError as e:
                if e.status_code not in (400, 404):
                    raise
            return engine_lite.Client(self.path, TIMEOUT).containers(all=True, filters=FILTERS), ""
        except OSError as e:  # ConnectionLost, its cause the socket's error when there is one
            return None, _unreachable(self.path, e)
        except engine_lite.APIError as e:
            return None, f"{self.path}: the daemon answered {e.status_code}"

    def claims(self, topo):
        """``(claims, why)``: the claims of every group on the daemon (tesson.holdings.Claim), or
        ``(None, why)`` when no daemon is reachable."""
        from tesson import holdings

        found, why = self.result()
        if found is None:
            return None, why
        return holdings.claims_from_containers(found, topo), ""


def _unreachable(path: str, e: OSError) -> str:
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    return f"{path}: {cause.strerror or cause}"


def list_containers(client=None) -> tuple[list[dict] | None, str]:
    """Every container carrying ``io.tesson.group`` (summaries, as ``docker ps -a``), and ``""``; or
    ``(None, why)`` when the daemon cannot be reached."""
    return Listing(client).result()


def load(topo, client=None):
    """``(claims, why)``: the claims of every group on the daemon (tesson.holdings.Claim), or
    ``(None, why)`` when no daemon is reachable."""
    return Listing(client).claims(topo)
