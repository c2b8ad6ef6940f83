"""``--lb auto``: the kernel front door where the daemon's host allows it, else the nginx balancer.

The one frontend choice that asks the daemon: a one-off container of the tesson image checks, in
the host's network with CAP_NET_ADMIN, that the kernel takes the rules the door needs (``nft -c``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tesson import default_image
from tesson.errors import TessonError, UsageError
from tesson.frontend import Context
from tesson.frontend.kernel import ONEOFF_LABEL, KernelFrontend, doors_of

if TYPE_CHECKING:
    from tesson.request import RunRequest


def choose(req: RunRequest) -> str:
    """``--lb auto``: "kernel" where the daemon's host allows it, else "nginx"; says once which, and why.

    Reads the same options as the frontends' ``from_request`` (ports, lb_method, lb_cpus,
    lb_image). Without ``-p`` there is nothing to publish: nginx's no-balancer case, silently.
    Options only nginx understands, or ``-p`` specs the kernel door cannot publish, choose nginx
    without asking the daemon; otherwise a one-off container of the image runs
    ``tesson kernel-agent probe`` in the host's network with CAP_NET_ADMIN (about half a second):
    nftables NAT, numgen, fib and masquerade checked by the kernel itself (``nft -c``).
    """
    import sys

    def say(kind: str, why: str) -> str:
        sys.stderr.write(f"tesson: front door: {kind} ({why})\n")
        return kind

    ports, opts = list(req.ports), req.frontend
    if not ports:
        return "nginx"
    for flag, value in (("--lb-method", opts.lb_method), ("--lb-cpus", opts.lb_cpus)):
        if value:
            return say("nginx", f"{flag} is the nginx balancer's")
    try:
        doors_of(ports)
    except UsageError as e:
        return say("nginx", f"the kernel door cannot publish it: {str(e).split(': ', 1)[-1].split(' (')[0]}")
    why = probe(opts.lb_image or default_image())
    if why is None:
        return say("kernel", "nftables DNAT on the daemon's host, no proxy; --lb nginx for least connections")
    return say("nginx", f"the kernel door is not possible here: {why}")


def probe(image: str) -> str | None:
    """None when the daemon's host can run the kernel front door, else why not (one line)."""
    from tesson import docker_client

    try:
        client = docker_client.connect()
    except TessonError as e:
        return str(e)
    fe = KernelFrontend((), image)
    ctx = Context(group="probe", docker=client)
    try:
        fe._oneoff(ctx, "probe", labels={ONEOFF_LABEL: "probe"})
    except TessonError as e:
        return str(e).split(": ", 1)[-1]
    return None
