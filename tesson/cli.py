"""The command line: argparse only, one module per verb under ``tesson.commands``.

Parsing imports nothing heavy; each verb's module is imported only when that verb runs, so
``tesson --help`` and ``tesson run --dry-run`` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from tesson import DEFAULT_IMAGE, IMAGE_ENV, __version__
from tesson import cli_verbs as V
from tesson.cli_help import EXAMPLES, PROG_ENV, program_name, with_prog
from tesson.cli_verbs import (
    COMMAND_VERBS,
    GROUP_VERBS,
    HIDDEN_VERBS,
    LB_KINDS,
    OPTIONAL_GROUP,
    UNITS,
    VERBS,
)

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = [
    "COMMAND_VERBS", "EXAMPLES", "GROUP_VERBS", "HIDDEN_VERBS", "LB_KINDS", "OPTIONAL_GROUP", "PROG_ENV",
    "UNITS", "VERBS", "Parser", "build_parser", "help_argv", "main", "parse", "program_name", "with_prog",
]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit 2."""

    verb_parsers: dict[str, Parser]  # the top-level parser's: each verb's own parser, by name

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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
    V.run_options(run)

    V.ps_options(group_verb("ps"))
    V.stop_options(group_verb("stop"))

    topo = verb("topology")
    topo.add_argument("--format", choices=("text", "json"), default="text", help="output (default: text)")
    topo.add_argument("--groups", action="store_true",
                      help="mark every CPU with the group and shard holding it (asks the Docker daemon)")

    group_verb("repair")

    demo = verb("demo-server")
    demo.add_argument("--port", type=V.port_number, default=8080, help="port to listen on (default: 8080)")
    demo.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")

    ls = verb("ls")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")
    ls.add_argument("-q", "--quiet", action="store_true", help="only the group names")

    V.logs_options(group_verb("logs"))
    V.exec_options(group_verb("exec", usage="tesson exec [OPTIONS] GROUP COMMAND [ARG...]"))

    st = group_verb("stats")
    st.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    st.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")

    group_verb("top")
    group_verb("start")
    rs = group_verb("restart")
    rs.add_argument("-t", "--time", type=V.non_negative_int, default=10, metavar="SECONDS",
                    help="seconds to wait for a graceful stop before killing (default: 10)")

    V.scale_options(group_verb("scale"))
    V.update_options(group_verb("update", usage="tesson update [OPTIONS] GROUP [COMMAND [ARG...]]"))

    ver = verb("version")
    ver.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")

    agent = verb("kernel-agent")  # run|sync|drain|status|purge|probe: see tesson/commands/kernel_agent.py
    agent.add_argument("action", choices=("run", "sync", "drain", "status", "purge", "probe"))
    agent.add_argument("--group", default="")
    agent.add_argument("--out", default=None)  # sync: the shard indexes held out of rotation ("3,4")
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
