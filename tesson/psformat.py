"""Docker's ``--format`` for listings (``tesson ps``): a pure parser and renderer, no daemon.

The grammar, as ``docker ps --format`` takes it (a small subset of Go's text/template)::

    FORMAT   := "" | "table"            the command's own default view (the caller draws it)
              | "json"                  every field of a row as one compact JSON object per line
              | "table" TEMPLATE        a header line, then a row per item, aligned in columns
              | TEMPLATE                one line per item, nothing aligned
    TEMPLATE := (TEXT | ACTION)*
    ACTION   := "{{" " "* ( FIELD | "json" " "+ ( FIELD | "." ) ) " "* "}}"
    FIELD    := "." NAME                one of the caller's field names, case as given (.ID, .CPUs)

Before parsing, as Docker does: the word ``table`` is taken off the front, spaces are trimmed from
both ends, and the two characters ``\\t`` and ``\\n`` become a tab and a newline everywhere (so a
shell's ``'{{.Name}}\\t{{.ID}}'`` works without ``$'...'``). ``{{json .Field}}`` is the field as a
JSON string; ``{{json .}}`` (and ``--format json``) the whole row as one object, keys sorted, every
value a string, ``<``, ``>`` and ``&`` escaped as ``\\u003c``... as Go's encoder writes them: the same
bytes ``docker ps --format json`` prints, and any JSON parser reads them back.

A table is aligned as Docker's (Go's text/tabwriter with minimum width 10, padding 3, spaces): a tab
ends a cell; each column is as wide as its widest cell plus 3, at least 10; the text after a line's
last tab is not a column and is not padded. The header line is the same template with each field
replaced by its header (``CONTAINER ID`` for ``.ID``) and each ``{{json ...}}`` by nothing.

Hazards: everything else of text/template (pipelines ``|``, ``if``/``range``/``with``, functions such
as ``upper`` or ``.Label "k"``, variables, comments, the trim markers ``{{-``/``-}}``) is refused with
one line naming the action, rather than printed literally. A field that does not exist is refused
when the format is parsed, before any daemon is asked (Docker notices only when a row is printed,
so with no rows it passes). A stray ``}}`` is text, as in Go. Widths count characters, as Go counts
runes: wide (East Asian) characters misalign in both. A literal backslash-t cannot be printed.
"""

from __future__ import annotations

import json
import re

from tesson.request import Value

TYPE_CHECKING = False  # typing is not imported on ps's path
if TYPE_CHECKING:
    from typing import Final


class FormatError(ValueError):
    """A --format that cannot be used; the message is one line, ready to print."""


class Action(Value):
    """One ``{{...}}`` of a template."""

    __slots__ = ("field", "json")

    def __init__(self, field: str, json: bool):
        self.field: Final = field  # a field name, or "." for the whole row (only with json)
        self.json: Final = json


class Format(Value):
    """A parsed --format."""

    __slots__ = ("kind", "parts")

    def __init__(self, kind: str, parts: tuple = ()):
        self.kind: Final = kind  # "default", "json", "table" or "template"
        self.parts: Final = parts  # str (text) and Action, in order


# Compiled on first use (re's cache), not at import: ps's default view, the usual one, needs neither
# (compiling both cost ps 0.6 ms).
_ACTION = r"\{\{(.*?)\}\}"  # with re.S
_INSIDE = r" *(?:(json) +)?(\.[A-Za-z_][A-Za-z0-9_]*|\.) *\Z"


def parse(text: str, fields: dict) -> Format:
    """Parse a --format value; ``fields`` maps each field name to its table header. FormatError
    names what is wrong: an unknown field, an action outside the grammar, an unclosed ``{{``."""
    if text in ("", "table"):
        return Format("default")
    if text == "json":
        return Format("json")
    kind = "template"
    if text.startswith("table"):
        kind, text = "table", text[len("table"):]
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    parts: list = []
    pos = 0
    for m in re.finditer(_ACTION, text, re.S):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        pos = m.end()
        parts.append(_action(m.group(0), m.group(1), fields))
    tail = text[pos:]
    if "{{" in tail:
        raise FormatError(f"--format: '{{{{' without '}}}}' in {_show(tail[tail.index('{{'):])}")
    if tail:
        parts.append(tail)
    return Format(kind, tuple(parts))


def _action(whole: str, inside: str, fields: dict) -> Action:
    m = re.match(_INSIDE, inside)
    if m is None:
        raise FormatError(f"--format: {_show(whole)} is not supported: only {{{{.Field}}}}, {{{{json .Field}}}} "
                          f"and {{{{json .}}}} (fields: {_names(fields)})")
    as_json, field = bool(m.group(1)), m.group(2)
    if field == ".":
        if not as_json:
            raise FormatError(f"--format: {_show(whole)} is not supported: use {{{{json .}}}} for the whole row")
        return Action(".", True)
    name = field[1:]
    if name not in fields:
        raise FormatError(f"--format: no field {field} (fields: {_names(fields)})")
    return Action(name, as_json)


def _names(fields: dict) -> str:
    return " ".join("." + f for f in fields)


def _show(text: str) -> str:
    text = text.replace("\t", "\\t").replace("\n", "\\n")
    return text if len(text) <= 40 else text[:37] + "..."


def json_text(value) -> str:
    """Compact JSON as Go's encoding/json writes it: keys sorted, ``<>&`` and U+2028/2029 escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _fill(fmt: Format, row: dict) -> str:
    out = []
    for p in fmt.parts:
        if isinstance(p, str):
            out.append(p)
        elif p.field == ".":
            out.append(json_text(row))
        else:
            out.append(json_text(row[p.field]) if p.json else row[p.field])
    return "".join(out)


def _header(fmt: Format, fields: dict) -> str:
    return "".join(p if isinstance(p, str) else ("" if p.json else fields[p.field]) for p in fmt.parts)


def render(fmt: Format, rows: list, fields: dict) -> str:
    """The rows (dicts of field -> string) in a parsed format, each line ending in a newline.
    A table has its header even without rows, as Docker's. Not for the ``default`` kind."""
    if fmt.kind == "json":
        return "".join(json_text(r) + "\n" for r in rows)
    lines = [_fill(fmt, r) + "\n" for r in rows]
    if fmt.kind == "template":
        return "".join(lines)
    if fmt.kind == "table":
        return tabwrite(_header(fmt, fields) + "\n" + "".join(lines))
    raise ValueError(f"render: nothing to render for the {fmt.kind!r} format")


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells as Go's tabwriter (padchar ' ', no flags) does.

    A column block is a run of consecutive lines that have a cell (tab-terminated) in that column;
    its width is its widest cell plus ``padding``, at least ``minwidth``; the cells right of it are
    laid out block by block within it. A line's last cell (after its last tab) is never padded."""
    lines = [ln.split("\t") for ln in text.split("\n")]
    widths: list = []
    out: list = []

    def emit(line0: int, line1: int) -> None:
        for cells in lines[line0:line1]:
            s = "".join(c.ljust(widths[j]) if j < len(widths) else c for j, c in enumerate(cells[:-1]))
            out.append(s + cells[-1])

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            emit(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        emit(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out)
