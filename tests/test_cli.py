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


# --- help as a plugin's, positional groups (issue 15) -----------------------------------------------


def test_every_verb_has_examples_and_no_global_options():
    from tesson import cli

    assert set(cli.EXAMPLES) == set(cli.VERBS)
    main_help = tesson_cmd("--help").stdout
    assert main_help.count("--log-level") == 2 and "global options:" in main_help  # usage and list
    for verb in cli.VERBS:
        r = tesson_cmd("help", verb)
        assert r.returncode == 0, (verb, r.stderr)
        assert r.stdout == tesson_cmd(verb, "--help").stdout
        examples = r.stdout.split("examples:\n", 1)[1]
        assert 2 <= sum(line.startswith("  tesson ") for line in examples.splitlines()) <= 3, (verb, examples)
        assert f"tesson {verb}" in examples, verb
        assert "--log-format" not in r.stdout and "--no-isolated" not in r.stdout, verb
        assert "see 'tesson --help'" in r.stdout
    # still accepted after the verb
    args = cli.parse(["ps", "--log-level", "debug", "--fsroot", "/x"])
    assert args.log_level == "debug" and args.fsroot == "/x"


def test_help_as_the_docker_cli_asks_for_it():
    """`docker help tesson [VERB]` runs the plugin with the words `help tesson [VERB]`."""
    assert tesson_cmd("help").stdout == tesson_cmd("--help").stdout
    assert tesson_cmd("help", "tesson").stdout == tesson_cmd("--help").stdout
    assert tesson_cmd("help", "tesson", "stop").stdout == tesson_cmd("stop", "--help").stdout
    r = tesson_cmd("help", "frobnicate")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_run_as_the_plugin_help_and_hints_say_docker_tesson():
    env = {"TESSON_PROG": "docker tesson"}
    r = tesson_cmd("--help", env=env)
    assert r.stdout.startswith("usage: docker tesson [-h]") and "Run 'docker tesson VERB --help'" in r.stdout
    r = tesson_cmd("help", "stop", env=env)
    assert r.stdout.startswith("usage: docker tesson stop ")
    assert "  docker tesson stop web " in r.stdout and "'docker tesson start web'" in r.stdout
    assert "docker docker" not in r.stdout
    assert "docker tesson version" in tesson_cmd("version", "--help", env=env).stdout
    r = tesson_cmd("stop", env=env)
    assert r.returncode == 2 and r.stderr.startswith("docker tesson stop: error: ")
    assert "(see 'docker tesson stop --help')" in r.stderr
    r = tesson_cmd("run", "--help", env=env)
    assert r.stdout.startswith("usage: docker tesson run [OPTIONS] IMAGE")


def test_with_prog_rewrites_commands_only():
    from tesson.cli import with_prog

    p = "docker tesson"
    assert with_prog("no group named 'x' (tesson ls lists every group)", p) == (
        "no group named 'x' (docker tesson ls lists every group)")
    assert with_prog("run 'tesson repair -g web' again", p) == "run 'docker tesson repair -g web' again"
    assert with_prog("stop it first: tesson stop -g web --purge", p) == "stop it first: docker tesson stop -g web --purge"
    for same in ("tesson group 'web'", "docker tesson ps", "tesson pins each shard", "tesson's version",
                 "io.tesson stop", "tesson-stop"):
        assert with_prog(same, p) == same
    assert with_prog("tesson ls", "tesson") == "tesson ls"


def test_group_given_positionally_or_with_g():
    from tesson import cli

    for verb in ("stop", "repair", "ps", "logs", "start"):
        a = cli.parse([verb, "web"])
        b = cli.parse([verb, "-g", "web"])
        for args in (a, b):
            cli._resolve_group(args, cli.build_parser().verb_parsers[verb])
            assert args.group == "web", verb
    args = cli.parse(["ps"])
    cli._resolve_group(args, cli.build_parser().verb_parsers["ps"])
    assert args.group is None
    r = tesson_cmd("stop", "web", "-g", "api")
    assert r.returncode == 2 and "given twice" in r.stderr


def test_ps_bad_input_is_exit_2_before_any_daemon():
    nowhere = {"DOCKER_HOST": "unix:///nonexistent/t15.sock"}
    for argv, says in ((["--format", "{{.Nope}}"], "no field .Nope"),
                       (["--format", "{{range .}}x{{end}}"], "not supported"),
                       (["--filter", "colour=red"], "invalid filter 'colour=red'"),
                       (["--filter", "status=sleepy"], "status is one of"),
                       (["--filter", "group"], "invalid filter"),
                       (["bad name!"], "invalid group name"),
                       (["--json", "--format", "json"], "not allowed with")):
        r = tesson_cmd("ps", *argv, env=nowhere)
        assert r.returncode == 2, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, (argv, r.stderr)
