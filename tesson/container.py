"""A small read-only view over docker-py's container dicts, and what tesson asks of a container.

docker-py answers with plain dicts of two shapes: a *summary* (one item of ``containers()``, as
``docker ps`` lists them: ``Names``, ``Labels``, ``State`` as a word, ``Status`` as text, ``Ports``
as a list) and an *inspect* (``inspect_container()``: ``Name``, ``Config.Labels``, ``State`` as an
object, ``RestartCount``, ``NetworkSettings.Ports`` as a map). :class:`Container` reads either, so
no other module spells those keys.
"""

from __future__ import annotations

from tesson import labels as L
from tesson import ports as P
from tesson.request import Value

TYPE_CHECKING = False  # typing is not imported on the read-only verbs' path
if TYPE_CHECKING:
    from typing import Any, Final


class Container(Value):
    """One container as docker-py gave it (``raw``: a summary or an inspect); immutable."""

    __slots__ = ("raw",)

    def __init__(self, raw: dict):
        self.raw: Final = raw

    @property
    def inspected(self) -> bool:
        return isinstance(self.raw.get("State"), dict)

    @property
    def id(self) -> str:
        return self.raw.get("Id", "")

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        if self.inspected:
            return (self.raw.get("Name") or "?").lstrip("/")
        return (self.raw.get("Names") or ["/?"])[0].lstrip("/")

    @property
    def labels(self) -> dict[str, str]:
        if self.inspected:
            return (self.raw.get("Config") or {}).get("Labels") or {}
        return self.raw.get("Labels") or {}

    @property
    def role(self) -> str:
        return self.labels.get(L.ROLE, "")

    @property
    def shard_index(self) -> int | None:
        """The shard index its labels give it (None: not a shard, or no readable index)."""
        if self.role != L.ROLE_SHARD:
            return None
        try:
            return int(self.labels.get(L.SHARD, ""))
        except ValueError:
            return None

    @property
    def state(self) -> str:
        """Docker's state word: running, exited, dead, created, restarting, paused, removing."""
        if self.inspected:
            return self.raw["State"].get("Status", "")
        return self.raw.get("State", "")

    @property
    def status(self) -> str:
        """Docker's status text of a summary (``Up 3 minutes``, ``Exited (137) 2 seconds ago``)."""
        return self.raw.get("Status", "")

    @property
    def running(self) -> bool:
        """Running now (an inspect: and not between two attempts of its restart policy)."""
        if self.inspected:
            state = self.raw["State"]
            return bool(state.get("Running")) and not state.get("Restarting")
        return self.state == "running"

    @property
    def steadily_running(self) -> bool:
        """Running, and never restarted by Docker since it was started (an inspect): a container
        that fell over and came back is not steady. Paused counts as running (paused on purpose)."""
        return self.running and not (self.raw.get("RestartCount") or 0)

    @property
    def started_at(self) -> str:
        """An inspect's ``State.StartedAt``: when its current run began ("" when never started).
        Each start has its own, and its own network namespace."""
        return ((self.raw.get("State") or {}).get("StartedAt") or "") if self.inspected else ""

    @property
    def created(self) -> str:
        """An inspect's ``Created`` timestamp."""
        return self.raw.get("Created") or ""

    @property
    def ports(self) -> list[str]:
        """A summary's ports as ``docker ps`` shows them (``0.0.0.0:32768->80/tcp``, or ``80/tcp``
        when not published), sorted by container port."""
        out = []
        for p in self.raw.get("Ports") or []:
            proto = p.get("Type", "tcp")
            if p.get("PublicPort"):
                out.append(P.display(p.get("IP", ""), p["PublicPort"], p["PrivatePort"], proto))
            else:
                out.append(f"{p['PrivatePort']}/{proto}")
        return sorted(set(out), key=lambda s: (s.split("->")[-1], s))

    def published(self) -> list[tuple[str, int, int, str]]:
        """The published ports of a summary: ``(host ip, host port, container port, proto)``."""
        return [
            (p.get("IP") or "0.0.0.0", p["PublicPort"], p["PrivatePort"], p.get("Type", "tcp"))
            for p in self.raw.get("Ports") or []
            if p.get("PublicPort")
        ]

    def address_on(self, network: str) -> str:
        """Its IP address on a network ("" when it has none there)."""
        nets = (self.raw.get("NetworkSettings") or {}).get("Networks") or {}
        return (nets.get(network) or {}).get("IPAddress", "")


def daemon_ns(text: str) -> int:
    """A daemon timestamp (``2024-05-01T10:00:00.123456789Z``: RFC 3339 in UTC, up to nine digits
    of fraction, trailing zeros cut) in nanoseconds since the epoch, exact (a float would round);
    0 for one it cannot read and for Docker's zero time (``0001-01-01T00:00:00Z``, never started)."""
    from datetime import datetime, timezone

    whole, _, frac = text.rstrip("Z").partition(".")
    try:
        if not text.endswith("Z") or not (frac.isdigit() or not frac):
            return max(0, int(datetime.fromisoformat(text).timestamp() * 10**9))  # an offset: not the daemon's way
        base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0
    secs = int((base - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds())
    return max(0, secs * 10**9 + int((frac + "000000000")[:9]))


def last_log_lines(client: Any, cid: str, count: int = 1, tail: int = 20, until: float | None = None) -> list[str]:
    """The last ``count`` non-empty lines a container wrote (stdout and stderr, each on one line of
    single spaces; before ``until``, an epoch time), out of its last ``tail``. Raises what the
    daemon raises."""
    text = client.logs(cid, stdout=True, stderr=True, tail=tail, **({"until": until} if until else {}))
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]
    return lines[-count:]
