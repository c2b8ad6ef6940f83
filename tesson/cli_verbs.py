"""The verbs of the command line and their options: the verb table, the argparse value types, and
each verb's options (:data:`VERB_OPTIONS`: ``cli`` builds a verb's parser, when that verb runs,
with these).

Imports nothing heavy (argparse only), as the rest of the parser."""

from __future__ import annotations

import argparse

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    from collections.abc import Callable

from tesson import DEFAULT_IMAGE, IMAGE_ENV

UNITS = ("pu", "core", "l3", "numa", "node", "package", "socket")
LB_KINDS = ("auto", "kernel", "nginx", "none")

VERBS = {
    # verb: (module under tesson.commands, one-line help)
    "run": ("run", "start a sharded group: one pinned container per core, L3, NUMA node or package"),
    "ps": ("ps", "list groups and their shards, rebuilt from container labels"),
    "stop": ("stop", "stop a group (and with --purge remove it)"),
    "topology": ("topology", "show the CPUs, caches and NUMA nodes tesson sees"),
    "repair": ("repair", "recreate the shards of a group that exited, died or vanished"),
    "demo-server": ("demo_server", "serve a small JSON page that tells which shard and CPUs answered"),
    "ls": ("ls", "list the groups, one line each"),
    "logs": ("logs", "show the logs of every shard of a group, merged, each line prefixed with its shard"),
    "exec": ("exec", "run a command in one shard of a group"),
    "stats": ("stats", "show each shard's CPU, memory and network use, and how busy its pinned CPUs are"),
    "top": ("top", "show the processes running in every shard of a group"),
    "start": ("start", "start a stopped group again"),
    "restart": ("restart", "stop a group and start it again"),
    "scale": ("scale", "change a running group's number of shards, live: re-pin, add, drain and remove"),
    "update": ("update", "replace a group's shards one at a time with another image, command, config or env"),
    "version": ("version", "show tesson's version and the Docker daemon's"),
}

# Verbs no user types: left out of the help and of completion.
HIDDEN_VERBS = {
    "kernel-agent": "kernel_agent",  # the kernel front door's agent, in its GROUP-lb container
    "vip-agent": "vip_agent",  # Gorb dr's VIP agent, in its GROUP-vip container
}
# Verbs whose process lives for days: tesson.cli gives them the cyclic collector's default thresholds.
LONG_RUNNING = frozenset({"kernel-agent", "vip-agent", "demo-server"})

# Verbs that take the group positionally (``tesson logs web``) or with -g (ps: optionally).
GROUP_VERBS = ("logs", "exec", "stats", "top", "start", "restart", "stop", "repair", "ps", "scale", "update")
OPTIONAL_GROUP = ("ps",)
# Of those, the verbs whose COMMAND follows the group: with -g, a word in GROUP's place is the command's.
COMMAND_VERBS = ("exec", "update")


def int_at_least(minimum: int):
    """An argparse type: a whole number no smaller than ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return convert


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)

def shard_count(text: str) -> int:
    """``run -n``: ASCII digits only (no sign, blank, '_' or other scripts' digits), at least 1.
    The upper bounds need the topology: :func:`tesson.placement.check_size`."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number of shards (digits 0-9), got {text!r}")
    digits = text.lstrip("0") or "0"
    if len(digits) > 30:  # far over every bound (and int() refuses beyond 4300 digits)
        raise argparse.ArgumentTypeError(f"a {len(digits)}-digit number of shards is far over the limit (4096)")
    value = int(digits)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def seconds(text: str) -> float:
    """A number of seconds, zero or more (``2``, ``0.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def tail(text: str) -> int | str:
    """``--tail``: a number of lines, or ``all``."""
    if text == "all":
        return text
    return non_negative_int(text)


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {value}")
    return value


def run_options(p: argparse.ArgumentParser) -> None:
    """``run``'s options, IMAGE and COMMAND."""
    p.add_argument("-g", "--group", help="group name (default: made from the image name)")
    p.add_argument(
        "-p",
        "--port",
        action="append",
        default=[],
        metavar="SPEC",
        dest="ports",
        help="publish a port as 'docker run -p' does: 80, 8080:80, 127.0.0.1:8080:80, 53/udp, "
        "8000-8001:80-81 (repeatable); with the balancer this is the group's front door",
    )
    p.add_argument(
        "-n", "--size", type=shard_count, metavar="N",
        help="number of shards (default: one per unit; at most 4 per allowed CPU without --force, "
        "4096 with it)",
    )
    p.add_argument(
        "--force", action="store_true",
        help="allow more than 4 shards per allowed CPU (up to 4096)",
    )
    p.add_argument(
        "-u",
        "--unit",
        type=str.lower,
        choices=UNITS,
        default="core",
        help="what one shard gets: pu, core, l3, numa (node) or package (socket) (default: core)",
    )
    p.add_argument(
        "--near",
        action="append",
        default=[],
        metavar="DEVICE",
        help="place the group only on the CPUs local to this device: a network interface (eth0), "
        "a disk (nvme0n1, sda), a GPU (card0) or a PCI address (0000:02:00.0) (repeatable)",
    )
    p.add_argument(
        "--exclusive",
        action="store_true",
        help="give each shard whole units no other group may use while this one exists, packed on as "
        "few packages and NUMA nodes as possible (default -n: every free unit)",
    )
    p.add_argument("--spread", action="store_true", help="with --exclusive: spread the units evenly over NUMA nodes")
    p.add_argument(
        "--cpus", metavar="LIST", help="place the group only on these CPUs, e.g. 2-15 (like hwloc-distrib --restrict)"
    )
    p.add_argument(
        "--memory", metavar="SIZE|auto",
        help="each shard's memory limit: 512m, 2g, or auto (its share of its NUMA nodes' memory, less the host's part)",
    )
    p.add_argument(
        "--memory-reservation", metavar="SIZE|auto", help="each shard's memory soft limit: a size, or auto (as --memory)"
    )
    p.add_argument(
        "--cpu-shares", metavar="N|auto", help="each shard's CPU shares: a number, or auto (1024 per CPU of the shard)"
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="CONFIG.json",
        help="a Docker Engine API container-create body to start from (Env, Labels, HostConfig, ...)",
    )
    p.add_argument(
        "--allow-privileged",
        action="store_true",
        help="accept a config that gives the shards power over the host (Privileged, host namespaces, "
        "CapAdd, Devices, unconfined security options, binds of / or the Docker socket)",
    )
    p.add_argument(
        "--lb",
        choices=LB_KINDS,
        help="the group's front door: kernel (nftables DNAT, no proxy), an embedded nginx balancer, "
        "none (each shard publishes its ports), or auto: kernel where the daemon's host allows it, "
        "else nginx, and says which (default: auto, or Gorb when --gorb is given)",
    )
    p.add_argument(
        "--lb-method",
        metavar="METHOD",
        help="nginx balancing method: least_conn (TCP default), round_robin (UDP default), "
        "random, hash, ...",
    )
    p.add_argument(
        "--lb-image",
        metavar="IMAGE",
        help=f"image that runs the balancer (default: env {IMAGE_ENV}, else {DEFAULT_IMAGE})",
    )
    p.add_argument("--lb-cpus", metavar="LIST", help="pin the balancer to these CPUs (default: unpinned)")
    p.add_argument(
        "--gorb-method", metavar="METHOD", help="IPVS scheduler for Gorb services (rr, wrr, lc, ...)"
    )
    p.add_argument(
        "--gorb-forward",
        choices=("nat", "dr", "tunnel"),
        help="how Gorb's IPVS reaches the shards: nat (published ports, the default) or dr (direct "
        "routing: the shards join a macvlan network on the Gorb device; needs --macvlan-range)",
    )
    p.add_argument(
        "--macvlan-range",
        metavar="CIDR",
        help="with --gorb-forward dr: free addresses of the Gorb device's subnet for the shards, e.g. 10.0.0.192/27",
    )
    p.add_argument(
        "--pull",
        choices=("missing", "always", "never"),
        default="missing",
        help="pull the image before running: when the daemon lacks it, always, or never (default: missing)",
    )
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan run would make now, given the groups on the daemon, and start nothing")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="output: the plan, or the group started (default: table)"
    )
    # nargs="?" and a check in main: argparse would otherwise call the optional COMMAND required too
    p.add_argument("image", metavar="IMAGE", nargs="?", help="the image every shard runs")
    p.add_argument(
        "command", metavar="COMMAND", nargs=argparse.REMAINDER, help="command and arguments for every shard"
    )


def ps_options(p: argparse.ArgumentParser) -> None:
    """``ps``'s output and filter options."""
    out = p.add_mutually_exclusive_group()
    out.add_argument("--format", default="table", metavar="FORMAT",
                     help="table (default), json (one object per shard and line), or a Go-style template "
                     "as docker ps takes: 'table {{.Name}}\\t{{.CPUs}}'")
    out.add_argument("--json", action="store_true",
                     help="the whole document: every group with its shards and frontend, indented")
    p.add_argument("-q", "--quiet", action="store_true", help="only the shards' container IDs")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="only what matches group=NAME, status=STATE (running, exited, missing, ...) or "
                   "image=IMAGE (repeatable: one key twice matches either value, two keys both)")


def stop_options(p: argparse.ArgumentParser) -> None:
    """``stop``'s options."""
    p.add_argument(
        "--purge", action="store_true", help="also remove its containers, anonymous volumes and networks"
    )
    p.add_argument(
        "-t",
        "--time",
        type=non_negative_int,
        default=10,
        metavar="SECONDS",
        help="seconds to wait for a graceful stop before killing (default: 10)",
    )


def logs_options(p: argparse.ArgumentParser) -> None:
    """``logs``'s options."""
    p.add_argument("-f", "--follow", action="store_true", help="keep following the logs")
    p.add_argument("-n", "--tail", type=tail, default="all", metavar="N",
                   help="the last N lines of each shard, or all (default: all)")
    p.add_argument("--since", metavar="TIME", help="lines since TIME: 10m, 1h30m, 2024-05-01T10:00:00Z, Unix seconds")
    p.add_argument("--until", metavar="TIME", help="lines before TIME (same forms as --since)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show Docker's time stamp of each line")
    p.add_argument("--no-log-prefix", action="store_true", help="leave out the shard name before each line")


def exec_options(p: argparse.ArgumentParser) -> None:
    """``exec``'s options and COMMAND."""
    p.add_argument("--index", type=non_negative_int, default=0, metavar="N", help="the shard to run in (default: 0)")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and pass it to the command")
    p.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    p.add_argument("-T", "--no-tty", action="store_true",
                   help="no terminal and no stdin, even on a terminal (there -it is the default)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set an environment variable")
    p.add_argument("-u", "--user", metavar="USER", help="run as USER (name or uid[:gid])")
    p.add_argument("-w", "--workdir", metavar="DIR", help="run in DIR inside the shard")
    p.add_argument("command", metavar="COMMAND", nargs=argparse.REMAINDER, help="the command and its arguments")


def change_options(p: argparse.ArgumentParser) -> None:
    """The options of the verbs that change a live group: scale and update."""
    p.add_argument("--drain-timeout", type=seconds, default=3.0, metavar="SECONDS",
                   help="seconds a shard out of the front door gets for its open connections (default: 3)")
    p.add_argument("-t", "--time", type=non_negative_int, default=10, metavar="SECONDS",
                   help="seconds to wait for a shard to stop before killing it (default: 10)")


def scale_options(p: argparse.ArgumentParser) -> None:
    """``scale``'s options."""
    p.add_argument("-n", "--size", type=positive_int, required=True, metavar="N", help="the new number of shards")
    change_options(p)


def update_options(p: argparse.ArgumentParser) -> None:
    """``update``'s options and COMMAND."""
    p.add_argument("--image", metavar="IMAGE", help="the new image (default: the group's; the daemon must have it)")
    p.add_argument("-c", "--config", metavar="CONFIG.json", help="a new container-create body (replaces the group's)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set an environment variable in every shard (repeatable)")
    p.add_argument("--parallel", type=positive_int, default=1, metavar="K", help="replace K shards at a time (default: 1)")
    p.add_argument("--rollback", choices=("shard", "all"), default="shard",
                   help="when a successor is not healthy: put back that shard's previous version (shard, the "
                   "default), or also undo every shard already replaced (all)")
    p.add_argument("--health-timeout", type=seconds, default=60.0, metavar="SECONDS",
                   help="seconds a successor with a Docker healthcheck gets to become healthy (default: 60)")
    change_options(p)
    p.add_argument("command", metavar="COMMAND", nargs=argparse.REMAINDER, help="a new command for every shard")


def _topology_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="output (default: text)")
    p.add_argument("--groups", action="store_true",
                   help="mark every CPU with the group and shard holding it (asks the Docker daemon)")


def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=port_number, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")


def _ls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the group names")


def _stats_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")


def _restart_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=non_negative_int, default=10, metavar="SECONDS",
                   help="seconds to wait for a graceful stop before killing (default: 10)")


def _version_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")


def _agent_options(p: argparse.ArgumentParser) -> None:
    # run|sync|drain|status|purge|probe: see tesson/commands/kernel_agent.py
    p.add_argument("action", choices=("run", "sync", "drain", "status", "purge", "probe"))
    p.add_argument("--group", default="")
    p.add_argument("--out", default=None)  # sync: the shard indexes held out of rotation ("3,4")


def _vip_agent_options(p: argparse.ArgumentParser) -> None:
    # run: see tesson/commands/vip_agent.py
    p.add_argument("action", choices=("run",))
    p.add_argument("--group", default="")
    p.add_argument("--vip", action="append", default=[])  # a service address to keep on the shards' lo


def _no_options(p: argparse.ArgumentParser) -> None:
    pass


# Each verb's own options (after the global ones and, for GROUP_VERBS, GROUP and -g), and the usage
# line of those whose IMAGE or COMMAND argparse would not show well. The help lists the verbs in
# this order.
VERB_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "run": run_options,
    "ps": ps_options,
    "stop": stop_options,
    "topology": _topology_options,
    "repair": _no_options,
    "demo-server": _demo_options,
    "ls": _ls_options,
    "logs": logs_options,
    "exec": exec_options,
    "stats": _stats_options,
    "top": _no_options,
    "start": _no_options,
    "restart": _restart_options,
    "scale": scale_options,
    "update": update_options,
    "version": _version_options,
    "kernel-agent": _agent_options,
    "vip-agent": _vip_agent_options,
}
USAGE = {
    "run": "tesson run [OPTIONS] IMAGE [COMMAND [ARG...]]",
    "exec": "tesson exec [OPTIONS] GROUP COMMAND [ARG...]",
    "update": "tesson update [OPTIONS] GROUP [COMMAND [ARG...]]",
}
