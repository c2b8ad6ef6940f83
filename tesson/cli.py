"""The command line: argparse only, one module per verb under ``tesson.commands``.

Parsing imports nothing heavy; each verb's module is imported only when that verb runs, so
``tesson --help`` and ``tesson run --dry-run`` stay fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from tesson import DEFAULT_IMAGE, IMAGE_ENV, __version__

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    from typing import NoReturn

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
}

# Verbs that take the group positionally (``tesson logs web``) or with -g (ps: optionally).
GROUP_VERBS = ("logs", "exec", "stats", "top", "start", "restart", "stop", "repair", "ps", "scale", "update")
OPTIONAL_GROUP = ("ps",)
# Of those, the verbs whose COMMAND follows the group: with -g, a word in GROUP's place is the command's.
COMMAND_VERBS = ("exec", "update")

# The program's name in usage, help and hints: the `docker tesson` shim sets it, so a user who typed
# `docker tesson ...` is told `docker tesson ...` back.
PROG_ENV = "TESSON_PROG"


def program_name() -> str:
    return os.environ.get(PROG_ENV, "").strip() or "tesson"


def with_prog(text: str, prog: str) -> str:
    """``text`` with each ``tesson VERB`` (a command to type, in help or a hint) naming ``prog``
    instead; ``docker tesson VERB`` and other uses of the word are left as they are."""
    if prog == "tesson":
        return text
    verbs = "|".join(re.escape(v) for v in sorted(VERBS, key=len, reverse=True))
    return re.sub(rf"(?<!docker )(?<![\w.-])tesson (?=(?:{verbs}|help)\b|-)", prog + " ", text)


EXAMPLES = {
    "run": """examples:
  tesson run -p 8080:80 nginx                  one pinned nginx per core behind one balancer on :8080
  tesson run -g web -u numa -n 2 -p 80 myapp   two shards, one per NUMA node, in group 'web'
  tesson run --dry-run -u l3 myapp             print the plan (CPUs and memory nodes), start nothing""",
    "ps": """examples:
  tesson ps                                    every group: its frontend, its shards in Docker's columns
  tesson ps web --format 'table {{.Name}}\\t{{.CPUs}}\\t{{.Status}}'
  tesson ps -q --filter status=exited          the container IDs of the shards that exited

--format: table (the default view), json (one object per shard and line, as docker ps), or a
template as Docker's: 'table ' for a header, {{.Field}}, {{json .Field}}, {{json .}}, \\t for a tab.
Fields: .Group .Shard .Name .ID .Image .Status .State .CPUs .Mems .Ports
--json prints the whole document instead: every group with its shards and frontend, indented.""",
    "stop": """examples:
  tesson stop web                stop every shard and the front door; 'tesson start web' brings them back
  tesson stop -t 2 web           give the shards 2 seconds before they are killed
  tesson stop --purge web        stop and remove everything the group made""",
    "repair": """examples:
  tesson repair web              restart the shards that exited, recreate the ones that vanished
  tesson repair -g web           the same, the group given with -g""",
    "topology": """examples:
  tesson topology                the CPUs, caches and NUMA nodes tesson places shards on
  tesson topology --format json  the same as one JSON document
  tesson --fsroot /tmp/dump topology   a machine's saved /sys and /proc instead of this one's""",
    "demo-server": """examples:
  tesson run -p 8080:8080 tesson demo-server   a demo group: each shard says who answered
  tesson demo-server --port 9000               serve here, on port 9000""",
    "ls": """examples:
  tesson ls                      every group: name, status, image, size, frontend
  tesson ls -q                   only the names
  tesson ls --format json        one JSON object per group and line""",
    "logs": """examples:
  tesson logs web                every shard's log, merged in time order: 'web-0 | ...'
  tesson logs -f --tail 10 web   the last 10 lines of each shard, then follow
  tesson logs --since 10m -t web the last ten minutes, with Docker's time stamps""",
    "exec": """examples:
  tesson exec web sh                           a shell in shard 0 (-it on a terminal)
  tesson exec --index 1 web cat /proc/self/status
  tesson exec -g web -e DEBUG=1 -- env         -g works too; '--' ends tesson's options""",
    "stats": """examples:
  tesson stats web               live figures, refreshed every second (Ctrl-C to leave)
  tesson stats --no-stream web   one sample (about a second) and exit
  tesson stats --no-stream --format json web   one JSON object per shard and line""",
    "top": """examples:
  tesson top web                 the processes of every shard, shard by shard
  tesson top -g web              the same, the group given with -g""",
    "start": """examples:
  tesson stop web && tesson start web   stop a group, later start it again on the same CPUs
  tesson start -g web                   the same, the group given with -g""",
    "restart": """examples:
  tesson restart web             stop every container of the group, then start them again
  tesson restart -t 2 web        give the shards 2 seconds to stop before they are killed""",
    "scale": """examples:
  tesson scale -g web -n 4       plan web again for 4 shards: re-pin, add, drain and remove, live
  tesson scale web -n 2 --drain-timeout 10   give leaving shards 10 s for their open connections""",
    "update": """examples:
  tesson update -g web --image web:2          roll every shard to web:2, one at a time
  tesson update -g web --env LOG=debug --parallel 2   two shards at a time, one variable changed
  tesson update -g web --image web:3 --rollback all undo every shard replaced if one fails""",
    "version": """examples:
  tesson version                 tesson's version and the daemon's
  tesson version --format json   the same as one JSON object
  docker tesson version          the plugin's (the tesson image's) version and the daemon's""",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit 2."""

    verb_parsers: dict[str, Parser]  # the top-level parser's: each verb's own parser, by name

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum: int):
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


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)

def _shard_count(text: str) -> int:
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


def _seconds(text: str) -> float:
    """A number of seconds, zero or more (``2``, ``0.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _tail(text: str) -> int | str:
    """``--tail``: a number of lines, or ``all``."""
    if text == "all":
        return text
    return _non_negative_int(text)


def _port_number(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {value}")
    return value


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options every verb understands, before the verb or after it.

    On the verb's own parser the defaults are suppressed, so a value given before the verb is not
    overwritten by the default of the same option after it, and so is the help: the global options
    are listed once, in the main help.
    """

    def default(value):
        return argparse.SUPPRESS if suppress else value

    first = len(parser._actions)
    g = parser.add_argument_group("global options")
    g.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=default("warning"),
        help="how much to log on stderr (default: warning)",
    )
    g.add_argument(
        "--log-format",
        choices=("console", "json"),
        default=default("console"),
        help="log lines for people or for machines (default: console)",
    )
    g.add_argument(
        "--fsroot",
        metavar="DIR",
        default=default(os.environ.get("TESSON_FSROOT") or None),  # None: not given (see parse)
        help="read the topology from DIR/sys and DIR/proc (env TESSON_FSROOT; default: /)",
    )
    g.add_argument(
        "--probe",
        action="store_true",
        default=default(False),
        help="read the topology on the Docker daemon's host with a probe container, even when that "
        "host looks like this machine (env TESSON_PROBE=1; a remote daemon is probed anyway)",
    )
    g.add_argument(
        "--probe-image",
        metavar="IMAGE",
        default=default(None),
        help=f"image that runs the topology probe (default: env {IMAGE_ENV}, else {DEFAULT_IMAGE})",
    )
    g.add_argument(
        "--no-isolated",
        action="store_true",
        default=default(False),
        help="leave out the CPUs the kernel isolates (isolcpus)",
    )
    g.add_argument(
        "--gorb",
        metavar="URI",
        default=default(os.environ.get("GORB_URI")),
        help="register groups with Gorb at DEVICE://HOST:PORT, e.g. eth0://10.0.0.1:4672 (env GORB_URI)",
    )
    if suppress:
        for action in parser._actions[first:]:
            action.help = argparse.SUPPRESS


def build_parser(prog: str | None = None) -> Parser:
    prog = prog or program_name()
    parser = Parser(
        prog=prog,
        allow_abbrev=False,
        description="Shard a containerised app across this machine's hardware: one pinned instance "
        "per core (or L3 cache, NUMA node, package), all behind one local load balancer.",
        epilog=f"Run '{prog} VERB --help' (or '{prog} help VERB') for a verb's options and examples. "
        "The global options above go before or after VERB.",
    )
    parser.add_argument("--version", action="version", version=f"tesson {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    parser.verb_parsers = sub.choices

    def verb(name: str, **kw) -> argparse.ArgumentParser:
        kw.setdefault("allow_abbrev", False)  # `--siz 2` must not pass for --size (the shim reads it as the image)
        epilog = EXAMPLES.get(name, "")
        epilog += f"\n\nGlobal options (--log-level, --fsroot, ...) go here too: see '{prog} --help'."
        kw.setdefault("epilog", with_prog(epilog.strip(), prog))
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if "usage" in kw:
            kw["usage"] = with_prog(kw["usage"], prog)
        if name in HIDDEN_VERBS:
            p = sub.add_parser(name, **kw)
        else:
            line = VERBS[name][1]
            p = sub.add_parser(name, help=line, description=line[:1].upper() + line[1:] + ".", **kw)
        _global_options(p, suppress=True)
        return p

    def group_verb(name: str, **kw) -> argparse.ArgumentParser:
        p = verb(name, **kw)
        if name in OPTIONAL_GROUP:
            p.add_argument("-g", "--group", metavar="GROUP", help="only this group (same as GROUP)")
            p.add_argument("group_pos", metavar="GROUP", nargs="?", help="only this group")
        else:
            p.add_argument("-g", "--group", metavar="GROUP", help="the group (same as GROUP)")
            p.add_argument("group_pos", metavar="GROUP", nargs="?", help="the group")
        return p

    run = verb("run", usage="tesson run [OPTIONS] IMAGE [COMMAND [ARG...]]")
    run.add_argument("-g", "--group", help="group name (default: made from the image name)")
    run.add_argument(
        "-p",
        "--port",
        action="append",
        default=[],
        metavar="SPEC",
        dest="ports",
        help="publish a port as 'docker run -p' does: 80, 8080:80, 127.0.0.1:8080:80, 53/udp, "
        "8000-8001:80-81 (repeatable); with the balancer this is the group's front door",
    )
    run.add_argument(
        "-n", "--size", type=_shard_count, metavar="N",
        help="number of shards (default: one per unit; at most 4 per allowed CPU without --force, "
        "4096 with it)",
    )
    run.add_argument(
        "--force", action="store_true",
        help="allow more than 4 shards per allowed CPU (up to 4096)",
    )
    run.add_argument(
        "-u",
        "--unit",
        type=str.lower,
        choices=UNITS,
        default="core",
        help="what one shard gets: pu, core, l3, numa (node) or package (socket) (default: core)",
    )
    run.add_argument(
        "--near",
        action="append",
        default=[],
        metavar="DEVICE",
        help="place the group only on the CPUs local to this device: a network interface (eth0), "
        "a disk (nvme0n1, sda), a GPU (card0) or a PCI address (0000:02:00.0) (repeatable)",
    )
    run.add_argument(
        "--exclusive",
        action="store_true",
        help="give each shard whole units no other group may use while this one exists, packed on as "
        "few packages and NUMA nodes as possible (default -n: every free unit)",
    )
    run.add_argument("--spread", action="store_true", help="with --exclusive: spread the units evenly over NUMA nodes")
    run.add_argument(
        "--cpus", metavar="LIST", help="place the group only on these CPUs, e.g. 2-15 (like hwloc-distrib --restrict)"
    )
    run.add_argument(
        "--memory", metavar="SIZE|auto",
        help="each shard's memory limit: 512m, 2g, or auto (its share of its NUMA nodes' memory, less the host's part)",
    )
    run.add_argument(
        "--memory-reservation", metavar="SIZE|auto", help="each shard's memory soft limit: a size, or auto (as --memory)"
    )
    run.add_argument(
        "--cpu-shares", metavar="N|auto", help="each shard's CPU shares: a number, or auto (1024 per CPU of the shard)"
    )
    run.add_argument(
        "-c",
        "--config",
        metavar="CONFIG.json",
        help="a Docker Engine API container-create body to start from (Env, Labels, HostConfig, ...)",
    )
    run.add_argument(
        "--allow-privileged",
        action="store_true",
        help="accept a config that gives the shards power over the host (Privileged, host namespaces, "
        "CapAdd, Devices, unconfined security options, binds of / or the Docker socket)",
    )
    run.add_argument(
        "--lb",
        choices=LB_KINDS,
        help="the group's front door: kernel (nftables DNAT, no proxy), an embedded nginx balancer, "
        "none (each shard publishes its ports), or auto: kernel where the daemon's host allows it, "
        "else nginx, and says which (default: auto, or Gorb when --gorb is given)",
    )
    run.add_argument(
        "--lb-method",
        metavar="METHOD",
        help="nginx balancing method: least_conn (TCP default), round_robin (UDP default), "
        "random, hash, ...",
    )
    run.add_argument(
        "--lb-image",
        metavar="IMAGE",
        help=f"image that runs the balancer (default: env {IMAGE_ENV}, else {DEFAULT_IMAGE})",
    )
    run.add_argument("--lb-cpus", metavar="LIST", help="pin the balancer to these CPUs (default: unpinned)")
    run.add_argument(
        "--gorb-method", metavar="METHOD", help="IPVS scheduler for Gorb services (rr, wrr, lc, ...)"
    )
    run.add_argument(
        "--gorb-forward",
        choices=("nat", "dr", "tunnel"),
        help="how Gorb's IPVS reaches the shards: nat (published ports, the default) or dr (direct "
        "routing: the shards join a macvlan network on the Gorb device; needs --macvlan-range)",
    )
    run.add_argument(
        "--macvlan-range",
        metavar="CIDR",
        help="with --gorb-forward dr: free addresses of the Gorb device's subnet for the shards, e.g. 10.0.0.192/27",
    )
    run.add_argument(
        "--pull",
        choices=("missing", "always", "never"),
        default="missing",
        help="pull the image before running: when the daemon lacks it, always, or never (default: missing)",
    )
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan run would make now, given the groups on the daemon, and start nothing")
    run.add_argument(
        "--format", choices=("table", "json"), default="table", help="output: the plan, or the group started (default: table)"
    )
    # nargs="?" and a check in main: argparse would otherwise call the optional COMMAND required too
    run.add_argument("image", metavar="IMAGE", nargs="?", help="the image every shard runs")
    run.add_argument(
        "command", metavar="COMMAND", nargs=argparse.REMAINDER, help="command and arguments for every shard"
    )

    ps = group_verb("ps")
    out = ps.add_mutually_exclusive_group()
    out.add_argument("--format", default="table", metavar="FORMAT",
                     help="table (default), json (one object per shard and line), or a Go-style template "
                     "as docker ps takes: 'table {{.Name}}\\t{{.CPUs}}'")
    out.add_argument("--json", action="store_true",
                     help="the whole document: every group with its shards and frontend, indented")
    ps.add_argument("-q", "--quiet", action="store_true", help="only the shards' container IDs")
    ps.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="only what matches group=NAME, status=STATE (running, exited, missing, ...) or "
                    "image=IMAGE (repeatable: one key twice matches either value, two keys both)")

    stop = group_verb("stop")
    stop.add_argument(
        "--purge", action="store_true", help="also remove its containers, anonymous volumes and networks"
    )
    stop.add_argument(
        "-t",
        "--time",
        type=_non_negative_int,
        default=10,
        metavar="SECONDS",
        help="seconds to wait for a graceful stop before killing (default: 10)",
    )

    topo = verb("topology")
    topo.add_argument("--format", choices=("text", "json"), default="text", help="output (default: text)")
    topo.add_argument("--groups", action="store_true",
                      help="mark every CPU with the group and shard holding it (asks the Docker daemon)")

    group_verb("repair")

    demo = verb("demo-server")
    demo.add_argument("--port", type=_port_number, default=8080, help="port to listen on (default: 8080)")
    demo.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")

    ls = verb("ls")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")
    ls.add_argument("-q", "--quiet", action="store_true", help="only the group names")

    logs = group_verb("logs")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following the logs")
    logs.add_argument("-n", "--tail", type=_tail, default="all", metavar="N",
                      help="the last N lines of each shard, or all (default: all)")
    logs.add_argument("--since", metavar="TIME", help="lines since TIME: 10m, 1h30m, 2024-05-01T10:00:00Z, Unix seconds")
    logs.add_argument("--until", metavar="TIME", help="lines before TIME (same forms as --since)")
    logs.add_argument("-t", "--timestamps", action="store_true", help="show Docker's time stamp of each line")
    logs.add_argument("--no-log-prefix", action="store_true", help="leave out the shard name before each line")

    ex = group_verb("exec", usage="tesson exec [OPTIONS] GROUP COMMAND [ARG...]")
    ex.add_argument("--index", type=_non_negative_int, default=0, metavar="N", help="the shard to run in (default: 0)")
    ex.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and pass it to the command")
    ex.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    ex.add_argument("-T", "--no-tty", action="store_true",
                    help="no terminal and no stdin, even on a terminal (there -it is the default)")
    ex.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set an environment variable")
    ex.add_argument("-u", "--user", metavar="USER", help="run as USER (name or uid[:gid])")
    ex.add_argument("-w", "--workdir", metavar="DIR", help="run in DIR inside the shard")
    ex.add_argument("command", metavar="COMMAND", nargs=argparse.REMAINDER, help="the command and its arguments")

    st = group_verb("stats")
    st.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    st.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")

    group_verb("top")
    group_verb("start")
    rs = group_verb("restart")
    rs.add_argument("-t", "--time", type=_non_negative_int, default=10, metavar="SECONDS",
                    help="seconds to wait for a graceful stop before killing (default: 10)")

    def change_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--drain-timeout", type=_seconds, default=3.0, metavar="SECONDS",
                       help="seconds a shard out of the front door gets for its open connections (default: 3)")
        p.add_argument("-t", "--time", type=_non_negative_int, default=10, metavar="SECONDS",
                       help="seconds to wait for a shard to stop before killing it (default: 10)")

    sc = group_verb("scale")
    sc.add_argument("-n", "--size", type=_positive_int, required=True, metavar="N", help="the new number of shards")
    change_options(sc)

    up = group_verb("update", usage="tesson update [OPTIONS] GROUP [COMMAND [ARG...]]")
    up.add_argument("--image", metavar="IMAGE", help="the new image (default: the group's; the daemon must have it)")
    up.add_argument("-c", "--config", metavar="CONFIG.json", help="a new container-create body (replaces the group's)")
    up.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                    help="set an environment variable in every shard (repeatable)")
    up.add_argument("--parallel", type=_positive_int, default=1, metavar="K", help="replace K shards at a time (default: 1)")
    up.add_argument("--rollback", choices=("shard", "all"), default="shard",
                    help="when a successor is not healthy: put back that shard's previous version (shard, the "
                    "default), or also undo every shard already replaced (all)")
    up.add_argument("--health-timeout", type=_seconds, default=60.0, metavar="SECONDS",
                    help="seconds a successor with a Docker healthcheck gets to become healthy (default: 60)")
    change_options(up)
    up.add_argument("command", metavar="COMMAND", nargs=argparse.REMAINDER, help="a new command for every shard")

    ver = verb("version")
    ver.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")


    agent = verb("kernel-agent")  # run|sync|drain|status|purge|probe: see tesson/commands/kernel_agent.py
    agent.add_argument("action", choices=("run", "sync", "drain", "status", "purge", "probe"))
    agent.add_argument("--group", default="")
    return parser


def _resolve_group(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A group verb's group from GROUP or -g (one of them, or both the same) into ``args.group``.
    With ``exec -g G``, a word in GROUP's place is the command's first word."""
    pos = args.__dict__.pop("group_pos", None)
    if args.verb in COMMAND_VERBS and args.group is not None and pos is not None:
        args.command = [pos, *args.command]
        pos = None
    if pos is not None and args.group is not None and pos != args.group:
        parser.error(f"the group is given twice ({pos!r} and -g {args.group!r})")
    args.group = args.group if args.group is not None else pos
    if args.group is None and args.verb not in OPTIONAL_GROUP:
        parser.error("the following argument is required: GROUP")


def parse(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse a command line. ``args.fsroot_given`` says whether the user chose the topology's root
    (``--fsroot`` or ``TESSON_FSROOT``); ``args.fsroot`` is then that root, else ``/``."""
    args = (parser or build_parser()).parse_args(argv)
    args.fsroot_given = args.fsroot is not None
    if args.fsroot is None:
        args.fsroot = "/"
    return args


def help_argv(argv: list[str]) -> list[str]:
    """``help [VERB]`` as ``[VERB] --help``. The Docker CLI runs ``docker help tesson [VERB]`` as
    the plugin with those very words, so a leading ``tesson`` after ``help`` is dropped."""
    if argv[:1] != ["help"]:
        return argv
    rest = argv[1:]
    if rest[:1] == ["tesson"]:
        rest = rest[1:]
    return [*rest[:1], "--help"]


def main(argv: list[str] | None = None) -> int:
    argv = help_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    prog = parser.prog
    args = parse(argv, parser)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return 2
    if args.verb == "run" and not args.image:
        parser.verb_parsers["run"].error("the following argument is required: IMAGE")
    if args.verb in GROUP_VERBS:
        _resolve_group(args, parser.verb_parsers[args.verb])

    from tesson import log, plugin_socket
    from tesson.errors import TessonError

    log.setup(args.log_level, args.log_format)
    plugin_socket.watch()  # run by `docker tesson`: stop when the docker CLI is told to
    import importlib

    module_name = HIDDEN_VERBS.get(args.verb) or VERBS[args.verb][0]
    module = importlib.import_module(f"tesson.commands.{module_name}")
    try:
        return module.main(args) or 0
    except TessonError as e:
        print(f"{prog}: {with_prog(str(e), prog)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug: still one line, the traceback only when asked for
        if log.enabled("debug"):
            import traceback

            traceback.print_exc()
        print(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --log-level debug)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
