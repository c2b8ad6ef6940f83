"""``--lb none``: no balancer; each shard publishes its ``-p`` ports itself.

``-p 80`` gives every shard its own ephemeral host port for container port 80 (``ps`` shows them).
A fixed host port (``-p 8080:80``) can be held by one shard only, so with more than one shard it
fails at create time, as ``docker run`` twice would; use a range (``-p 8080-8090:80``) instead.
"""

from __future__ import annotations

from tesson import ports as _ports
from tesson.errors import UsageError
from tesson.frontend import Context, Frontend

TYPE_CHECKING = False  # typing is not imported on ps's path
if TYPE_CHECKING:
    from tesson.placement import Shard
    from tesson.request import RunRequest


def publish(ctx: Context, body: dict) -> None:
    """Publish every ``-p`` port of the group in one create body (shared with Gorb)."""
    if not ctx.ports:
        return
    exposed = body.setdefault("ExposedPorts", {}) or {}
    exposed.update(_ports.exposed_ports(ctx.ports))
    body["ExposedPorts"] = exposed
    host = body.setdefault("HostConfig", {}) or {}
    bindings = host.get("PortBindings") or {}
    for key, binds in _ports.port_bindings(ctx.ports).items():
        bindings[key] = list(bindings.get(key) or []) + binds
    host["PortBindings"] = bindings
    body["HostConfig"] = host


class NoneFrontend(Frontend):
    kind = "none"

    @classmethod
    def from_request(cls, req: RunRequest) -> NoneFrontend:
        flags = req.frontend.lb_flags_given()
        if flags:
            raise UsageError(f"{', '.join(flags)}: there is no balancer with --lb none (drop {flags[0]}, or use --lb nginx)")
        return cls()

    def shape_shard(self, ctx: Context, shard: Shard, body: dict) -> None:
        publish(ctx, body)

    def describe(self, ctx: Context) -> dict:
        return {"kind": "none", "status": "each shard publishes its own ports", "ports": []}


FRONTEND = NoneFrontend
