#!/usr/bin/env python3
"""The everyday verbs against the docker CLI commands they replace, in the same run.

    .venv/bin/python benchmarks/verbs.py [--rounds 10] [--runs 5] [--tesson .venv/bin/tesson]

Starts one group (the test suite's shard image, `-u pu -n 2 --lb none`, named bench-verbs), then
times whole processes, in rounds whose order rotates so that a machine whose load changes weighs
on every command alike:

  tesson ps -g G          against  docker ps
  tesson ls               against  docker ps
  tesson logs --tail 1 G  against  docker logs --tail 1 G-0   (tesson reads both shards' logs)

and, for reference, the floor of any tesson command: `tesson --version` (interpreter and CLI
skeleton, no daemon call), `python -c pass` and `python -c "import docker"` (the same interpreter).
Reports the median and best of each command and the ratios of the medians (target: at most
1.3x). The group is removed at the end. No hyperfine needed: each run is a fork/exec timed with
time.perf_counter, output discarded.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUP = "bench-verbs"
IMAGE = "tesson-test-shard:latest"
TARGET = 1.3


def _run(argv: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"verbs bench: {' '.join(argv)} failed: {r.stderr.decode().strip()}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5, help="runs of each command per round")
    ap.add_argument("--tesson", default=str(ROOT / ".venv" / "bin" / "tesson"))
    args = ap.parse_args()
    py = str(Path(args.tesson).with_name("python"))
    t = args.tesson

    subprocess.run([t, "stop", "-g", GROUP, "--purge"], capture_output=True)
    r = subprocess.run([t, "run", "-g", GROUP, "-u", "pu", "-n", "2", "--lb", "none", IMAGE],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"verbs bench: cannot start the group: {r.stderr.strip()}")
    commands = {
        "docker ps": ["docker", "ps"],
        "tesson ps": [t, "ps", "-g", GROUP],
        "tesson ls": [t, "ls"],
        "docker logs --tail 1": ["docker", "logs", "--tail", "1", f"{GROUP}-0"],
        "tesson logs --tail 1": [t, "logs", "--tail", "1", GROUP],
        "tesson --version": [t, "--version"],
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import docker'": [py, "-c", "import docker"],
    }
    try:
        for argv in commands.values():  # warm-up, and each must work before it is timed
            _run(argv)
        times: dict[str, list[float]] = {name: [] for name in commands}
        order = list(commands)
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            order = order[1:] + order[:1]
            for name in order:
                times[name] += [_run(commands[name]) for _ in range(args.runs)]
        load.append(os.getloadavg()[0])
    finally:
        subprocess.run([t, "stop", "-g", GROUP, "--purge"], capture_output=True)

    med = {n: statistics.median(v) * 1000 for n, v in times.items()}
    best = {n: min(v) * 1000 for n, v in times.items()}
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{args.rounds} rounds x {args.runs} runs, load average {load[0]:.1f} -> {load[1]:.1f}")
    print("| command | median | best |\n| --- | ---: | ---: |")
    for n in commands:
        print(f"| `{n}` | {med[n]:.1f} ms | {best[n]:.1f} ms |")
    print("\n| pair | median ratio | best ratio | target |\n| --- | ---: | ---: | --- |")
    met = True
    for ours, theirs in (("tesson ps", "docker ps"), ("tesson ls", "docker ps"),
                         ("tesson logs --tail 1", "docker logs --tail 1")):
        ratio = med[ours] / med[theirs]
        met &= ratio <= TARGET
        print(f"| `{ours}` / `{theirs}` | {ratio:.2f}x | {best[ours] / best[theirs]:.2f}x | "
              f"{'met' if ratio <= TARGET else 'missed'} (<= {TARGET}x) |")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
