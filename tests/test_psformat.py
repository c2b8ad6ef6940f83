"""tesson.psformat, the --format of ps, without a daemon: the grammar, what it refuses, JSON as Go
writes it, and tables aligned as Go's tabwriter aligns Docker's. (Against docker's own output on
real containers: test_ps.py.)"""

from __future__ import annotations

import json

import pytest

from tesson import psformat as F

FIELDS = {"Name": "NAME", "ID": "CONTAINER ID", "CPUs": "CPUS", "Ports": "PORTS"}
ROWS = [
    {"Name": "web-0", "ID": "0123456789ab", "CPUs": "0", "Ports": "0.0.0.0:80->80/tcp"},
    {"Name": "web-10", "ID": "ba9876543210", "CPUs": "0-3,8", "Ports": ""},
]


def render(text, rows=ROWS):
    return F.render(F.parse(text, FIELDS), rows, FIELDS)


def test_kinds():
    assert F.parse("", FIELDS).kind == "default" and F.parse("table", FIELDS).kind == "default"
    assert F.parse("json", FIELDS).kind == "json"
    assert F.parse("table {{.Name}}", FIELDS).kind == "table"
    assert F.parse("{{.Name}}", FIELDS).kind == "template"
    with pytest.raises(ValueError):
        F.render(F.parse("table", FIELDS), ROWS, FIELDS)  # the caller's own view


def test_template_lines_and_escapes():
    assert render("{{.Name}} on {{.CPUs}}") == "web-0 on 0\nweb-10 on 0-3,8\n"
    # spaces inside the braces and around the template, as Go and Docker take them
    assert render("  {{ .Name }}:{{json  .CPUs }}  ") == 'web-0:"0"\nweb-10:"0-3,8"\n'
    # \t and \n typed as two characters become a tab and a newline; no alignment without 'table'
    assert render(r"{{.Name}}\t{{.ID}}\n") == "web-0\t0123456789ab\n\nweb-10\tba9876543210\n\n"
    # a stray }} is text, as in Go
    assert render("}}{{.Name}}") == "}}web-0\n}}web-10\n"
    assert render("{{.Name}}", []) == ""


def test_json_lines_as_go_writes_them():
    out = render("json")
    lines = out.splitlines()
    assert len(lines) == 2 and out.endswith("\n")
    assert lines[0] == ('{"CPUs":"0","ID":"0123456789ab","Name":"web-0","Ports":"0.0.0.0:80-\\u003e80/tcp"}')
    assert [json.loads(line) for line in lines] == ROWS  # any parser reads Go's escapes back
    assert render("{{json .}}") == out
    assert F.json_text("a<b>&c\u2028") == '"a\\u003cb\\u003e\\u0026c\\u2028"'
    assert F.json_text("é") == '"é"'  # UTF-8 as it is, as Go


def test_table_aligns_as_docker():
    out = render(r"table {{.ID}}\t{{.Name}}\t{{.CPUs}}\t{{.Ports}}")
    assert out.splitlines() == [
        # each column: its widest cell + 3, at least 10; the last cell is not padded
        "CONTAINER ID   NAME      CPUS      PORTS",
        "0123456789ab   web-0     0         0.0.0.0:80->80/tcp",
        "ba9876543210   web-10    0-3,8     ",
    ]
    # the header of {{json ...}} is empty, as Docker's; a table without rows keeps its header
    assert render(r"table {{json .Name}}\t{{.CPUs}}", []) == "          CPUS\n"
    assert render("table {{.Name}} has {{.CPUs}}", ROWS[:1]) == "NAME has CPUS\nweb-0 has 0\n"


def test_tabwrite_column_blocks():
    # A line without a tab ends every column block: the next block is measured by itself.
    text = "x\ty\tz\nno tabs\naaaaaaaaaaaaa\tb\n"
    assert F.tabwrite(text) == "x         y         z\nno tabs\naaaaaaaaaaaaa   b\n"
    # A shorter line ends the blocks right of its last cell only.
    assert F.tabwrite("a\tbbbbbbbbbbbbbbbb\tc\nd\te\nf\tg\th\n") == (
        "a         bbbbbbbbbbbbbbbb   c\nd         e\nf         g         h\n")
    assert F.tabwrite("a\tb", minwidth=0, padding=1) == "a b"


@pytest.mark.parametrize("text,says", [
    ("{{.Foo}}", "no field .Foo (fields: .Name .ID .CPUs .Ports)"),
    ("{{.name}}", "no field .name"),  # case matters, as in Go
    ("table {{.Name}}\\t{{.Cpus}}", "no field .Cpus"),
    ("{{json .Nope}}", "no field .Nope"),
    ("{{.}}", "use {{json .}} for the whole row"),
    ("{{if .Name}}x{{end}}", "{{if .Name}} is not supported"),
    ("{{.Name | upper}}", "{{.Name | upper}} is not supported"),
    ("{{- .Name -}}", "{{- .Name -}} is not supported"),
    ('{{.Label "k"}}', '{{.Label "k"}} is not supported'),
    ("{{/* note */}}", "is not supported"),
    ("{{upper .Name}}", "is not supported"),
    ("{{.Name}} {{.ID", "'{{' without '}}' in {{.ID"),
    ("{{json}}", "is not supported"),
])
def test_refusals_are_one_line(text, says):
    with pytest.raises(F.FormatError) as e:
        F.parse(text, FIELDS)
    msg = str(e.value)
    assert says in msg and "\n" not in msg and msg.startswith("--format: "), msg
