#!/usr/bin/env python3
"""The everyday verbs against the docker CLI commands they replace, in the same run.

    .venv/bin/python benchmarks/verbs.py [--rounds 10] [--runs 5] [--tesson .venv/bin/tesson]
                                         [--python PYTHON] [--plugin-image IMAGE] [--compare TESSON]

Starts one group (the test suite's shard image, `-u pu -n 2 --lb none`, named bench-verbs), then
times whole processes, in rounds whose order rotates so that a machine whose load changes weighs
on every command alike:

  tesson ps -g G          against  docker ps
  tesson ls               against  docker ps
  tesson logs --tail 1 G  against  docker logs --tail 1 G-0   (tesson reads both shards' logs)

and, for reference, the floor of any tesson command: `tesson --version` (interpreter and CLI
skeleton, no daemon call), `python -c pass`, `python -c "import argparse"` (any CLI built on
argparse pays it), and the imports a verb no longer pays on the local
socket: `python -c "import docker"` and `python -c "import requests"` (what ps still imports for a
group behind Gorb, whose client is requests). With --plugin-image, also `docker tesson ps -g G`
through the CLI plugin (installed into a temporary DOCKER_CONFIG, running that image) against
`docker ps` (and `docker tesson ls`, `docker tesson logs --tail 1 G`), that plugin's floor, a
container start: `docker run --rm --entrypoint true IMAGE`, and the floor of any plugin, installed
beside it: `docker noop` (a sh script that does nothing: what the docker CLI costs to run a
plugin) and `docker pynoop ps` (a Python script that imports argparse and parses its verb).
With --compare TESSON (another tree's tesson, say a venv of main), also times that tesson's ps, ls,
logs and --version in the same rounds (rows marked "[compare]", against the same group), and how
many times faster this tesson is. Reports the median and best of each command and the ratios of the
medians (target: at most 1.3x). The group is removed at the end. No hyperfine needed: each run is a
fork/exec timed with time.perf_counter, output discarded.

Bytecode: every command runs without PYTHONDONTWRITEBYTECODE (removed from the environment if set,
as it is in some shells and CI images), after one warm-up run each. With it set, an editable install
(the venv's tesson is one) never writes its .pyc files, so every run compiles tesson's modules again
(tens of ms); a pip-installed tesson and the image have them compiled, so that is what is measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUP = "bench-verbs"
IMAGE = "tesson-test-shard:latest"
TARGET = 1.3
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(argv: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or ENV)
    took = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"verbs bench: {' '.join(argv)} failed: {r.stderr.decode().strip()}")
    return took


NOOP_SH = """#!/bin/sh
if [ "$1" = docker-cli-plugin-metadata ]; then
  echo '{"SchemaVersion":"0.1.0","Vendor":"bench","Version":"0","ShortDescription":"does nothing"}'
fi
"""

NOOP_PY = """#!{python}
import sys
if sys.argv[1:2] == ["docker-cli-plugin-metadata"]:  # the CLI asks first: answered before any import
    print('{{"SchemaVersion":"0.1.0","Vendor":"bench","Version":"0","ShortDescription":"parses, does nothing"}}')
    sys.exit(0)
import argparse
p = argparse.ArgumentParser(prog="docker pynoop")
p.add_argument("verb")
p.parse_args(sys.argv[2:])
"""


def _floor_plugins(where: Path, python: str) -> None:
    """Two plugins beside tesson's, the floors of any plugin: ``docker noop``, a POSIX sh script that
    prints its metadata and does nothing (what the docker CLI alone costs to run a plugin), and
    ``docker pynoop``, a Python script that imports argparse and parses its verb (what a plugin in
    Python with an argparse command line costs before it does anything)."""
    for name, text in (("docker-noop", NOOP_SH), ("docker-pynoop", NOOP_PY.format(python=python))):
        (where / name).write_text(text)
        (where / name).chmod(0o755)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5, help="runs of each command per round")
    ap.add_argument("--tesson", default=str(ROOT / ".venv" / "bin" / "tesson"))
    ap.add_argument("--python", help="the interpreter of the reference rows (default: the one beside --tesson)")
    ap.add_argument("--plugin-image", metavar="IMAGE",
                    help="also time `docker tesson ps` through the plugin running IMAGE (build one from this tree "
                         "with scripts/build-image --tag IMAGE)")
    ap.add_argument("--compare", metavar="TESSON",
                    help="also time this other tesson's verbs in the same rounds (a venv of another tree, e.g. main's)")
    args = ap.parse_args()
    py = args.python or str(Path(args.tesson).with_name("python"))
    t = args.tesson

    subprocess.run([t, "stop", "-g", GROUP, "--purge"], capture_output=True, env=ENV)
    r = subprocess.run([t, "run", "-g", GROUP, "-u", "pu", "-n", "2", "--lb", "none", IMAGE],
                       capture_output=True, text=True, env=ENV)
    if r.returncode:
        sys.exit(f"verbs bench: cannot start the group: {r.stderr.strip()}")
    commands = {
        "docker ps": ["docker", "ps"],
        "tesson ps -g G": [t, "ps", "-g", GROUP],
        "tesson ls": [t, "ls"],
        "docker logs --tail 1 G-0": ["docker", "logs", "--tail", "1", f"{GROUP}-0"],
        "tesson logs --tail 1 G": [t, "logs", "--tail", "1", GROUP],
        "tesson --version": [t, "--version"],
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import argparse'": [py, "-c", "import argparse"],
        "python -c 'import docker'": [py, "-c", "import docker"],
        "python -c 'import requests'": [py, "-c", "import requests"],
    }
    mine = ("tesson ps -g G", "tesson ls", "tesson logs --tail 1 G", "tesson --version")
    if args.compare:
        for name in mine:
            commands[f"{name} [compare]"] = [args.compare, *commands[name][1:]]
    envs: dict[str, dict] = {}
    config = None
    if args.plugin_image:
        config = tempfile.mkdtemp(prefix="bench-verbs-docker-config.")
        subprocess.run([str(ROOT / "docker-plugin" / "install"), f"{config}/cli-plugins"], check=True,
                       capture_output=True)
        plugin_env = {**ENV, "DOCKER_CONFIG": config, "TESSON_IMAGE": args.plugin_image}
        _floor_plugins(Path(config) / "cli-plugins", py)
        commands["docker tesson ps -g G"] = ["docker", "tesson", "ps", "-g", GROUP]
        commands["docker tesson ls"] = ["docker", "tesson", "ls"]
        commands["docker tesson logs --tail 1 G"] = ["docker", "tesson", "logs", "--tail", "1", GROUP]
        commands["docker run --rm --entrypoint true IMAGE"] = ["docker", "run", "--rm", "--entrypoint", "true",
                                                               args.plugin_image]
        commands["docker noop (sh plugin)"] = ["docker", "noop"]
        commands["docker pynoop (python plugin)"] = ["docker", "pynoop", "ps"]
        for name in commands:
            if name.startswith("docker ") and name.split()[1] in ("tesson", "noop", "pynoop"):
                envs[name] = plugin_env
    try:
        for name, argv in commands.items():  # warm-up (writes .pyc), and each must work before it is timed
            _run(argv, envs.get(name))
        times: dict[str, list[float]] = {name: [] for name in commands}
        order = list(commands)
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            order = order[1:] + order[:1]
            for name in order:
                times[name] += [_run(commands[name], envs.get(name)) for _ in range(args.runs)]
        load.append(os.getloadavg()[0])
    finally:
        subprocess.run([t, "stop", "-g", GROUP, "--purge"], capture_output=True, env=ENV)
        if config:
            shutil.rmtree(config, ignore_errors=True)

    med = {n: statistics.median(v) * 1000 for n, v in times.items()}
    best = {n: min(v) * 1000 for n, v in times.items()}
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{args.rounds} rounds x {args.runs} runs, load average {load[0]:.1f} -> {load[1]:.1f}, "
          f"PYTHONDONTWRITEBYTECODE unset")
    print("| command | median | best |\n| --- | ---: | ---: |")
    for n in commands:
        print(f"| `{n}` | {med[n]:.1f} ms | {best[n]:.1f} ms |")
    print("\n| pair | median ratio | best ratio | target |\n| --- | ---: | ---: | --- |")
    met = True
    pairs = [("tesson ps -g G", "docker ps"), ("tesson ls", "docker ps"),
             ("tesson logs --tail 1 G", "docker logs --tail 1 G-0"), ("tesson --version", "docker ps")]
    floors = {"tesson --version", "python -c 'import argparse'", "docker noop (sh plugin)",
              "docker pynoop (python plugin)"}
    pairs.append(("python -c 'import argparse'", "docker ps"))
    if args.plugin_image:
        pairs += [("docker tesson ps -g G", "docker ps"), ("docker tesson ls", "docker ps"),
                  ("docker tesson logs --tail 1 G", "docker logs --tail 1 G-0"),
                  ("docker noop (sh plugin)", "docker ps"), ("docker pynoop (python plugin)", "docker ps")]
    if args.compare:
        pairs += [(f"{name} [compare]", theirs) for name, theirs in pairs[:4]]
    for ours, theirs in pairs:
        ratio = med[ours] / med[theirs]
        # the floors and --compare are shown, not judged
        goal = ours not in floors and not ours.endswith("[compare]")
        met &= ratio <= TARGET or not goal
        shown = "compare" if ours.endswith("[compare]") else "floor"
        verdict = ("met" if ratio <= TARGET else "missed") + f" (<= {TARGET}x)" if goal else shown
        print(f"| `{ours}` / `{theirs}` | {ratio:.2f}x | {best[ours] / best[theirs]:.2f}x | {verdict} |")
    if args.compare:
        print(f"\n--compare {args.compare} against --tesson {t}:\n\n| verb | median, compare / this | best |\n"
              "| --- | ---: | ---: |")
        for name in mine:
            other = f"{name} [compare]"
            print(f"| `{name}` | {med[other] / med[name]:.2f}x ({med[other] - med[name]:+.1f} ms) | "
                  f"{best[other] / best[name]:.2f}x |")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
