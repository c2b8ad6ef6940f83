"""The command line: argparse only, one module per verb under ``tesson.commands``.

Parsing imports nothing heavy; each verb's module is imported only when that verb runs, so
``tesson --help`` and ``tesson run --dry-run`` stay fast.
"""

from __future__ import annotations

import gc

# A command is a short process that allocates many objects that live as long as it does (argparse's
# parsers, the topology's tree, the daemon's listing) and makes almost no reference cycles; at the
# default threshold (700) the cyclic collector walks them over and over: 10-20 ms of a 256-CPU
# `run --dry-run` (benchmarks/README.md, issue 12). The verbs that live for days get the defaults
# back (main: cli_verbs.LONG_RUNNING).
GC_DEFAULTS = gc.get_threshold()
gc.set_threshold(50_000, 20, 20)

import argparse  # after the collector's threshold: its imports allocate too
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


def _columns() -> int:
    """The terminal's width as argparse finds it with ``shutil.get_terminal_size()``: ``COLUMNS``
    when it is a positive number, else the width of the terminal on stdout, else 80. Without
    importing ``shutil``, which imports the compression modules: argparse makes a formatter for
    every option it adds, so every command would pay for them."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        # ignored for mypy: sys.__stdout__ may be None, which the AttributeError below covers
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Width:
    """Gives a help formatter the width argparse would give it (:func:`_columns`, less 2)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None, **kw) -> None:
        # ignored for mypy: a mixin, whose next class in the MRO is argparse's HelpFormatter
        super().__init__(prog, indent_increment, max_help_position,  # type: ignore[call-arg]
                         _columns() - 2 if width is None else width, **kw)


class HelpFormatter(_Width, argparse.HelpFormatter):
    pass


class RawDescriptionHelpFormatter(_Width, argparse.RawDescriptionHelpFormatter):
    pass


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit 2."""

    verb_parsers: dict[str, VerbParser]  # the top-level parser's: each verb's own parser, by name

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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


class VerbParser:
    """A verb's parser, made the first time it is used.

    argparse keeps one parser per verb among the subparsers' choices but only ever calls the parser
    of the verb on the command line; building all of them (some 240 options, each of which argparse
    checks by formatting it) cost about as much as reading a 128-CPU topology. So the choices hold
    these stand-ins, and the real :class:`Parser` is built, with the verb's options, when anything
    of it is asked for (``parse_known_args`` by argparse, ``error``, ``print_help``, ``_actions``):
    every attribute is the built parser's. :attr:`parser` gives it with its type.
    """

    def __init__(self, *, verb: str, **kwargs):
        self.verb = verb
        self._kwargs = kwargs  # what argparse's add_parser passes on (prog, ...)
        self._parser: Parser | None = None

    @property
    def parser(self) -> Parser:
        if self._parser is None:
            self._parser = _build_verb(self.verb, self._kwargs)
        return self._parser

    def __getattr__(self, name: str):
        return getattr(self.parser, name)


def _build_verb(name: str, kw: dict) -> Parser:
    prog = kw.pop("tesson_prog")
    kw.setdefault("allow_abbrev", False)  # `--siz 2` must not pass for --size (the shim reads it as the image)
    epilog = EXAMPLES.get(name, "")
    epilog += f"\n\nGlobal options (--log-level, --fsroot, ...) go here too: see '{prog} --help'."
    kw.setdefault("epilog", with_prog(epilog.strip(), prog))
    kw.setdefault("formatter_class", RawDescriptionHelpFormatter)
    if name in V.USAGE:
        kw["usage"] = with_prog(V.USAGE[name], prog)
    if name not in HIDDEN_VERBS:
        line = VERBS[name][1]
        kw["description"] = line[:1].upper() + line[1:] + "."
    p = Parser(**kw)
    _global_options(p, suppress=True)
    if name in GROUP_VERBS:
        if name in OPTIONAL_GROUP:
            p.add_argument("-g", "--group", metavar="GROUP", help="only this group (same as GROUP)")
            p.add_argument("group_pos", metavar="GROUP", nargs="?", help="only this group")
        else:
            p.add_argument("-g", "--group", metavar="GROUP", help="the group (same as GROUP)")
            p.add_argument("group_pos", metavar="GROUP", nargs="?", help="the group")
    V.VERB_OPTIONS[name](p)
    return p


def build_parser(prog: str | None = None) -> Parser:
    """tesson's parser: the global options and the verbs, each verb's parser a :class:`VerbParser`
    (``parser.verb_parsers[VERB]``), built when used."""
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
    sub = parser.add_subparsers(dest="verb", metavar="VERB",
                                parser_class=VerbParser)  # type: ignore[type-var]  # a stand-in, see VerbParser
    parser.verb_parsers = sub.choices
    for name in V.VERB_OPTIONS:
        if name in HIDDEN_VERBS:
            sub.add_parser(name, verb=name, tesson_prog=prog)
        else:
            sub.add_parser(name, help=VERBS[name][1], verb=name, tesson_prog=prog)
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
        parser.verb_parsers["run"].parser.error("the following argument is required: IMAGE")
    if args.verb in GROUP_VERBS:
        _resolve_group(args, parser.verb_parsers[args.verb].parser)

    if args.verb in V.LONG_RUNNING:
        gc.set_threshold(*GC_DEFAULTS)
    from tesson import log, plugin_socket
    from tesson.errors import TessonError

    log.setup(args.log_level, args.log_format)
    plugin_socket.watch()  # run by `docker tesson`: stop when the docker CLI is told to
    module_name = HIDDEN_VERBS.get(args.verb) or VERBS[args.verb][0]
    # __import__ rather than importlib.import_module: the importlib package costs every command ~0.3 ms
    module = __import__(f"tesson.commands.{module_name}", fromlist=["main"])
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
    except Exception as e:  # the daemon's error, else a bug: still one line, the traceback only when asked for
        from tesson import docker_client

        if docker_client.is_daemon_error(e):
            print(f"{prog}: {docker_client.explain(e)}", file=sys.stderr)
            return 1
        if log.enabled("debug"):
            import traceback

            traceback.print_exc()
        print(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --log-level debug)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
