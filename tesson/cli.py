"""The command line: argparse only, one module per verb under ``tesson.commands``.

Parsing imports nothing heavy; each verb's module is imported only when that verb runs, so
``tesson --help`` and ``tesson run --dry-run`` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from tesson import DEFAULT_IMAGE, IMAGE_ENV, __version__

UNITS = ("pu", "core", "l3", "numa", "node", "package", "socket")
LB_KINDS = ("nginx", "none")

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
    "version": ("version", "show tesson's version and the Docker daemon's"),
}

# Verbs that take the group positionally (``tesson logs web``) or with -g.
GROUP_VERBS = ("logs", "exec", "stats", "top", "start", "restart")

EXAMPLES = {
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
    "version": """examples:
  tesson version                 tesson's version and the daemon's
  tesson version --format json   the same as one JSON object
  docker tesson version          the plugin's (the tesson image's) version and the daemon's""",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit 2."""

    def error(self, message: str):  # type: ignore[override]
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
    overwritten by the default of the same option after it.
    """

    def default(value):
        return argparse.SUPPRESS if suppress else value

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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tesson",
        allow_abbrev=False,
        description="Shard a containerised app across this machine's hardware: one pinned instance "
        "per core (or L3 cache, NUMA node, package), all behind one local load balancer.",
        epilog="Run 'tesson VERB --help' for a verb's options.",
    )
    parser.add_argument("--version", action="version", version=f"tesson {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    parser.verb_parsers = sub.choices  # type: ignore[attr-defined]

    def verb(name: str, **kw) -> argparse.ArgumentParser:
        kw.setdefault("allow_abbrev", False)  # `--siz 2` must not pass for --size (the shim reads it as the image)
        if name in EXAMPLES:
            kw.setdefault("epilog", EXAMPLES[name])
            kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        p = sub.add_parser(name, help=VERBS[name][1], description=VERBS[name][1].capitalize() + ".", **kw)
        _global_options(p, suppress=True)
        return p

    def group_verb(name: str, **kw) -> argparse.ArgumentParser:
        p = verb(name, **kw)
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
        help="the group's front door: an embedded nginx balancer, or none (each shard publishes "
        "its ports) (default: nginx, or Gorb when --gorb is given)",
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
        "--pull",
        choices=("missing", "always", "never"),
        default="missing",
        help="pull the image before running: when the daemon lacks it, always, or never (default: missing)",
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan and call no daemon")
    run.add_argument(
        "--format", choices=("table", "json"), default="table", help="output: the plan, or the group started (default: table)"
    )
    # nargs="?" and a check in main: argparse would otherwise call the optional COMMAND required too
    run.add_argument("image", metavar="IMAGE", nargs="?", help="the image every shard runs")
    run.add_argument(
        "command", metavar="COMMAND", nargs=argparse.REMAINDER, help="command and arguments for every shard"
    )

    ps = verb("ps")
    ps.add_argument("-g", "--group", help="only this group")
    ps.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")
    ps.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")

    stop = verb("stop")
    stop.add_argument("-g", "--group", required=True, help="the group to stop")
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

    repair = verb("repair")
    repair.add_argument("-g", "--group", required=True, help="the group to repair")

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

    ver = verb("version")
    ver.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")

    return parser


def _resolve_group(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A group verb's group from GROUP or -g (one of them, or both the same) into ``args.group``.
    With ``exec -g G``, a word in GROUP's place is the command's first word."""
    pos = args.__dict__.pop("group_pos", None)
    if args.verb == "exec" and args.group is not None and pos is not None:
        args.command = [pos, *args.command]
        pos = None
    if pos is not None and args.group is not None and pos != args.group:
        parser.error(f"the group is given twice ({pos!r} and -g {args.group!r})")
    args.group = args.group if args.group is not None else pos
    if args.group is None:
        parser.error("the following argument is required: GROUP")


def parse(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse a command line. ``args.fsroot_given`` says whether the user chose the topology's root
    (``--fsroot`` or ``TESSON_FSROOT``); ``args.fsroot`` is then that root, else ``/``."""
    args = (parser or build_parser()).parse_args(argv)
    args.fsroot_given = args.fsroot is not None
    if args.fsroot is None:
        args.fsroot = "/"
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(argv, parser)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return 2
    if args.verb == "run" and not args.image:
        parser.verb_parsers["run"].error("the following argument is required: IMAGE")
    if args.verb in GROUP_VERBS:
        _resolve_group(args, parser.verb_parsers[args.verb])

    from tesson import log
    from tesson.errors import TessonError

    log.setup(args.log_level, args.log_format)
    import importlib

    module = importlib.import_module(f"tesson.commands.{VERBS[args.verb][0]}")
    try:
        return module.main(args) or 0
    except TessonError as e:
        print(f"tesson: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tesson: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug: still one line, the traceback only when asked for
        if log.enabled("debug"):
            import traceback

            traceback.print_exc()
        print(f"tesson: internal error: {type(e).__name__}: {e} (rerun with --log-level debug)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
