"""The CLI skeleton: help, usage errors (one line, exit 2), verbs."""

from tests.conftest import tesson_cmd


def test_help_lists_every_verb():
    r = tesson_cmd("--help")
    assert r.returncode == 0
    for verb in ("run", "ps", "stop", "topology", "repair"):
        assert f"    {verb} " in r.stdout


def test_version():
    r = tesson_cmd("--version")
    assert r.returncode == 0 and r.stdout.startswith("tesson ")


def test_usage_errors_are_one_line_exit_2():
    for argv in (["run", "-n", "0", "img"], ["run", "-n", "-3", "img"], ["run", "-n", "abc", "img"],
                 ["run", "-u", "bogus", "img"], ["frobnicate"], ["run", "-g", "bad name!", "--dry-run", "img"]):
        r = tesson_cmd(*argv)
        assert r.returncode == 2, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (argv, r.stderr)
        assert "Traceback" not in r.stderr


def test_words_after_image_belong_to_the_command():
    from tesson.cli import build_parser

    args = build_parser().parse_args(["run", "-n", "2", "-p", "8080", "img", "httpd", "-f", "-p", "8080"])
    assert args.image == "img"
    assert args.command == ["httpd", "-f", "-p", "8080"]
    assert args.ports == ["8080"] and args.size == 2


def test_group_from_image():
    from tesson.names import group_from_image

    assert group_from_image("registry:5000/org/web:1.2") == "web-1.2"
    assert group_from_image("nginx") == "nginx"
    assert group_from_image("nginx:latest") == "nginx"
    assert group_from_image("org/app@sha256:abc") == "app"


def test_cpulist_roundtrip():
    from tesson import cpulist

    assert cpulist.parse("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert cpulist.format([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert cpulist.parse("") == [] and cpulist.format([]) == ""
    assert cpulist.parse_mask("00000000,0000000f") == [0, 1, 2, 3]


def test_run_without_image_names_only_the_image():
    r = tesson_cmd("run", "-n", "2")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "IMAGE" in r.stderr and "COMMAND" not in r.stderr
