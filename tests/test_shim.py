"""The `docker tesson` shim without a daemon: its copy of tesson's grammar agrees with the parser,
it answers shell completion in cobra's protocol, and it never runs itself. The shim against the
real daemon and both docker CLIs is tested in test_image.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pytest

import tesson
from tesson import cli, completion
from tests.conftest import ROOT, tesson_cmd

SHIM = ROOT / "docker-plugin" / "docker-tesson"


def block_vars(*names: str) -> dict:
    """The values of the shim's generated variables, as sh sees them."""
    script = completion.render_sh() + "".join(f'printf "%s\\0" "${name}"\n' for name in names)
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10,
                       env={"PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    return dict(zip(names, r.stdout.split("\0")))


def parsers() -> dict:
    """'' -> tesson's parser, VERB -> the verb's, straight from argparse (the verbs users type: not
    the hidden ones, which the shim never needs to read)."""
    top = cli.build_parser()
    out = {"": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.update({v: p for v, p in action.choices.items() if v not in cli.HIDDEN_VERBS})
    return out


def complete(*words: str, mode: str = "__complete", env: dict | None = None, timeout: float = 10):
    """Run the shim's completion as the docker CLI does; returns (candidates, directive)."""
    full = {k: v for k, v in os.environ.items() if k != "TESSON_SHIM_ACTIVE"}
    full.update(env or {})
    r = subprocess.run([str(SHIM), mode, "tesson", *words], capture_output=True, text=True,
                       env=full, timeout=timeout)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and lines[-1].startswith(":"), r.stdout
    return [line.split("\t")[0] for line in lines[:-1]], int(lines[-1][1:])


# --- one grammar -------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["run", "--siz", "2", "img"],
    ["run", "--lb-m", "x", "img"],
    ["run", "--dry", "img"],
    ["ps", "--form", "json"],
    ["stop", "--gr", "x"],
    ["--log-l", "debug", "ps"],
])
def test_abbreviations_are_refused(argv):
    r = tesson_cmd(*argv)
    assert r.returncode == 2, (argv, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_no_parser_allows_abbreviations():
    for name, p in parsers().items():
        assert p.allow_abbrev is False, name or "tesson"


def test_generated_block_in_the_shim_is_current():
    r = subprocess.run([sys.executable, "-m", "tesson.completion", "--check", str(SHIM)],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_shim_knows_every_option_that_takes_a_value():
    """Walk every parser's actions: an option that consumes the next word must be in the shim's
    list for that parser, and nothing else may be."""
    ps = parsers()
    names = {name: f"tesson_valued_{name.replace('-', '_')}" for name in ps}
    got = block_vars(*names.values())
    for name, p in ps.items():
        want = {o for a in p._actions if a.option_strings and a.nargs != 0 for o in a.option_strings}
        assert want, name
        assert set(got[names[name]].split()) == want, name or "tesson"


def test_shim_knows_the_verbs_files_and_where_the_command_starts():
    got = block_vars("tesson_verbs", "tesson_files_run", "tesson_rest_run", "tesson_version",
                     "tesson_image", "tesson_image_env", "tesson_label_group")
    assert got["tesson_verbs"].split() == list(cli.VERBS)
    run = parsers()["run"]
    config = next(a for a in run._actions if a.dest == "config")
    assert set(got["tesson_files_run"].split()) == set(config.option_strings)
    positionals = [a for a in run._actions if not a.option_strings]
    assert positionals[int(got["tesson_rest_run"])].nargs == argparse.REMAINDER
    assert got["tesson_version"] == tesson.__version__
    assert got["tesson_image"] == tesson.DEFAULT_IMAGE and got["tesson_image_env"] == tesson.IMAGE_ENV


def test_one_home_for_the_version_and_the_image():
    """The version and the default image are spelled in tesson/__init__.py and in the shim's
    generated block alone."""
    files = ["Dockerfile", "Makefile", "pyproject.toml", "scripts/build-image", "scripts/demo",
             "docker-plugin/install", "tesson/cli.py", "tesson/cli_help.py", "tesson/cli_verbs.py",
             "tesson/completion.py"]
    for f in files:
        text = (ROOT / f).read_text()
        assert f'"{tesson.__version__}"' not in text and f"={tesson.__version__}" not in text, f
        assert tesson.DEFAULT_IMAGE not in text, f
    shim = SHIM.read_text()
    outside = shim.replace(shim[shim.index(completion.BEGIN):shim.index(completion.END)], "")
    assert tesson.__version__ not in outside.replace('"SchemaVersion":"0.1.0"', "")
    assert tesson.DEFAULT_IMAGE not in outside


# --- completion (cobra's protocol) --------------------------------------------------------------------


def test_complete_verbs():
    words, directive = complete("")
    assert words == list(cli.VERBS)
    assert directive == 4
    assert complete("r") == ([v for v in cli.VERBS if v.startswith("r")], 4)
    assert "restart" in complete("r")[0]
    assert complete("--log-level", "debug", "sto") == (["stop"], 4)


def test_complete_options_and_their_values():
    words, directive = complete("run", "--l")
    assert {"--lb", "--lb-method", "--lb-image", "--lb-cpus", "--log-level", "--log-format"} == set(words)
    assert directive == 4
    assert complete("run", "-u", "")[0] == list(cli.UNITS)
    assert complete("run", "--unit", "n")[0] == ["numa", "node"]
    assert complete("run", "--unit=p")[0] == ["--unit=pu", "--unit=package"]
    assert complete("--log-level", "")[0] == ["debug", "info", "warning", "error"]
    # a config file: JSON files; a folder: directories; free text: nothing, no file names
    assert complete("run", "-c", "") == (["json"], 8)
    assert complete("run", "-c", "", mode="__completeNoDesc") == ([], 8)
    assert complete("--fsroot", "") == ([], 16)
    assert complete("run", "-n", "") == ([], 4)
    # after the image, the words are the shards' command: nothing to offer
    assert complete("run", "-n", "2", "img", "-") == ([], 4)
    # a verb without positionals offers its own options (not the global ones)
    words, _ = complete("ls", "")
    assert "--format" in words and "-q" in words and "--log-level" not in words
    words, _ = complete("stop", "-")
    assert "--purge" in words and "-g" in words
    assert complete("frobnicate", "") == ([], 4)


def test_complete_descriptions():
    r = subprocess.run([str(SHIM), "__complete", "tesson", "sto"], capture_output=True, text=True, timeout=10)
    assert r.stdout == f"stop\t{cli.VERBS['stop'][1]}\n:4\n"
    r = subprocess.run([str(SHIM), "__completeNoDesc", "tesson", "sto"], capture_output=True, text=True, timeout=10)
    assert r.stdout == "stop\n:4\n"
    # Debian's docker 20.10 bash completion leaves out the plugin's name
    r = subprocess.run([str(SHIM), "__completeNoDesc", "run", "--unit", "c"], capture_output=True, text=True,
                       timeout=10)
    assert r.stdout == "core\n:4\n"


def test_completion_never_runs_itself(tmp_path):
    """The docker CLI points DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND at the plugin during
    completion; the shim answered by running itself, forever. Now it answers at once."""
    t0 = time.monotonic()
    words, _ = complete("", env={"DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND": str(SHIM)}, timeout=5)
    assert words == list(cli.VERBS)
    assert time.monotonic() - t0 < 1


STANDIN = """#!/bin/sh
printf '%s\\n' "$*" >> "$T6_CALLS"
case "$1 $2" in
  "ps -a") printf 'web\\nweb\\napi\\n' ;;
  "image ls") printf 'tesson:latest\\n<none>:<none>\\nbusybox:1\\n' ;;
esac
exit 0
"""


def test_shim_finds_the_real_docker_when_pointed_at_itself(tmp_path):
    """Groups come from `docker ps`: with the variable naming the plugin, the shim uses the docker
    on PATH (or its parent's program), never itself; run it and it refuses a loop."""
    (tmp_path / "docker").write_text(STANDIN)
    (tmp_path / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    env = {"DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND": str(SHIM), "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "T6_CALLS": str(calls)}
    assert complete("stop", "-g", "", env=env) == (["api", "web"], 4)
    assert complete("stop", "", env=env) == (["api", "web"], 4)  # the group, positionally
    assert complete("ps", "w", env=env) == (["web"], 4)
    assert complete("stop", "--group=w", env=env) == (["--group=web"], 4)
    assert complete("run", "--lb-image", "t", env=env) == (["tesson:latest"], 4)
    assert all(line.split()[0] in ("ps", "image") for line in calls.read_text().splitlines())
    # TESSON_SHIM_ACTIVE marks whatever the shim started: met again, it stops
    r = subprocess.run([str(SHIM), "tesson", "ps"], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, TESSON_SHIM_ACTIVE="1"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "loop" in r.stderr
