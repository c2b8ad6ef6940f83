"""tesson's command-line grammar as the `docker tesson` shim needs it, read from the parser itself.

The shim (docker-plugin/docker-tesson, POSIX sh) runs tesson in a container, but two of its jobs must
be done before, or without, a container: finding ``run -c FILE`` among tesson's options (to mount
FILE), and answering the Docker CLI's shell completion (``docker __complete tesson ...``) in a few
milliseconds. Both need the grammar: the verbs, which options take a value, their choices, what a
value names (a group, an image, a file). Instead of writing it again in sh, where it drifted (an
abbreviation the parser took was read as the image), this module walks the parser that
``cli.build_parser()`` builds and renders a block of sh variables that sits between two marker lines
in the shim. ``make shim-grammar`` (``python -m tesson.completion --write FILE``) regenerates it;
``--check FILE`` exits 1 when the block is stale, and the test suite runs that check.

The same block carries the version, the default image and the label keys the completion queries
with, copied from their one home in the package.

Hazards: the parser's private ``_actions`` and ``_SubParsersAction`` are argparse internals, stable
since Python 3.2 but not documented. What a value names is decided by the option's ``dest``
(``VALUE_KINDS``); a new option with an unknown dest completes as free text, which is safe.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

BEGIN = "# >>> tesson grammar: generated from tesson's parser by `make shim-grammar`; do not edit"
END = "# <<< tesson grammar"

# What an option's value (or a positional) names, by its dest. Anything else is free text.
VALUE_KINDS = {
    "group": "group",
    "group_pos": "group",
    "index": "shard",
    "shard": "shard",
    "image": "image",
    "lb_image": "image",
    "config": "file:json",
    "fsroot": "dir",
    "command": "rest",
}


@dataclass(frozen=True)
class Word:
    """One thing a command line may hold at some place, for one parser ('' = before the verb).

    ``what`` is ``verb``, ``flag`` (an option without a value), ``option`` (takes one value) or
    ``arg`` (a positional); ``words`` its option strings, verb name or metavar; ``kind`` what the
    value names (``choice:a b c``, ``group``, ``shard``, ``image``, ``file:EXT``, ``dir``, ``text``,
    ``rest`` for a REMAINDER); ``help`` one line.
    """

    parser: str
    what: str
    words: tuple
    kind: str
    help: str


def _one_line(text) -> str:
    return re.sub(r"\s+", " ", str(text or "")).strip()


def _kind(action: argparse.Action) -> str:
    if action.choices:
        return "choice:" + " ".join(str(c) for c in action.choices)
    if action.nargs == argparse.REMAINDER:
        return "rest"
    return VALUE_KINDS.get(action.dest, "text")


def _words_of(name: str, parser: argparse.ArgumentParser) -> list:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            from tesson.cli import HIDDEN_VERBS

            helps = {a.dest: a.help for a in action._choices_actions}
            for verb in action.choices:
                if verb in HIDDEN_VERBS:
                    continue
                out.append(Word(name, "verb", (verb,), "", _one_line(helps.get(verb))))
            continue
        hidden = action.help == argparse.SUPPRESS
        if action.option_strings:
            takes_value = action.nargs != 0
            out.append(Word(name, "option" if takes_value else "flag", tuple(action.option_strings),
                            _kind(action) if takes_value else "", "" if hidden else _one_line(action.help)))
        else:
            out.append(Word(name, "arg", (action.metavar or action.dest,), _kind(action),
                            "" if hidden else _one_line(action.help)))
    return out


def grammar(parser: argparse.ArgumentParser | None = None) -> list:
    """Every verb, option and positional of tesson's command line, as ``Word``s."""
    if parser is None:
        from tesson.cli import build_parser

        parser = build_parser()
    words = _words_of("", parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                words += _words_of(verb, sub)
    return words


def valued_options(words: list, parser: str) -> list:
    """The option strings of ``parser`` that take a value (the word after them is that value)."""
    return [o for w in words if w.parser == parser and w.what == "option" for o in w.words]


def _var(parser: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", parser)


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def render_sh(words: list | None = None) -> str:
    """The shim's generated block, between the BEGIN and END lines (both included)."""
    from tesson import DEFAULT_IMAGE, IMAGE_ENV, __version__
    from tesson.labels import GROUP, SHARD

    if words is None:
        words = grammar()
    parsers = [""] + [w.words[0] for w in words if w.parser == "" and w.what == "verb"]
    lines = [
        BEGIN,
        f"tesson_version={_sq(__version__)}",
        f"tesson_image=${{{IMAGE_ENV}:-{DEFAULT_IMAGE}}}",
        f"tesson_image_env={IMAGE_ENV}",
        f"tesson_label_group={_sq(GROUP)}",
        f"tesson_label_shard={_sq(SHARD)}",
        f"tesson_verbs={_sq(' '.join(parsers[1:]))}",
        "# shellcheck disable=SC2034  # the per-parser variables are read by name, through eval",
        "{",
        "# Options that take a value, per parser (tesson_valued_ before the verb, then one per verb).",
    ]
    for p in parsers:
        lines.append(f"tesson_valued_{_var(p)}={_sq(' ' + ' '.join(valued_options(words, p)) + ' ')}")
    lines.append("# Options whose value is a file on the host (mounted read-only at its own path).")
    for p in parsers:
        files = [o for w in words if w.parser == p and w.what == "option" and w.kind.startswith("file")
                 for o in w.words]
        if files:
            lines.append(f"tesson_files_{_var(p)}={_sq(' ' + ' '.join(files) + ' ')}")
    lines.append("# Positionals before the one that takes the rest of the line (the shards' command).")
    for p in parsers:
        args = [w for w in words if w.parser == p and w.what == "arg"]
        rest = [i for i, w in enumerate(args) if w.kind == "rest"]
        if rest:
            lines.append(f"tesson_rest_{_var(p)}={rest[0]}")
    lines.append("}")
    lines.append("# For completion: PARSER, WHAT, WORDS, KIND, HELP separated by tabs, one line each ('-': none).")
    # Global options are also accepted after the verb; completion offers them only when asked for
    # with '-', so they are marked apart. No field is empty ('-' instead): sh's read would merge them.
    # Their help is shown once, in the main help: after the verb it comes from there.
    top = {o: w.help for w in words if w.parser == "" and w.what in ("flag", "option") for o in w.words}
    table = []
    for w in words:
        what, help = w.what, w.help
        if w.parser and what in ("flag", "option") and set(w.words) <= set(top):
            what = "global-" + what
            help = help or top[w.words[-1]]
        table.append("\t".join(f or "-" for f in (w.parser, what, " ".join(w.words), w.kind, help)))
    lines.append("tesson_table=" + _sq("\n".join(table)))
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(text: str, block: str) -> str:
    """``text`` (the shim) with its generated block replaced by ``block``."""
    start = text.find(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        raise ValueError("no generated grammar block (the BEGIN/END marker lines) in the shim")
    end = text.index("\n", end) + 1
    return text[:start] + block + text[end:]


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tesson.completion", allow_abbrev=False,
                                 description="Print, write or check the shim's generated grammar block.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="SHIM", help="replace the block in SHIM")
    mode.add_argument("--check", metavar="SHIM", help="exit 1 when the block in SHIM is stale")
    args = ap.parse_args(argv)
    block = render_sh()
    if not (args.write or args.check):
        sys.stdout.write(block)
        return 0
    path = args.write or args.check
    with open(path) as f:
        text = f.read()
    try:
        new = splice(text, block)
    except ValueError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    if args.check:
        if new != text:
            print(f"{path}: the generated grammar is stale: run 'make shim-grammar'", file=sys.stderr)
            return 1
        return 0
    if new != text:
        with open(path, "w") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
