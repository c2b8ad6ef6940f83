#!/usr/bin/env python3
"""Start cost of the `docker tesson` plugin, side by side with a bare container start.

    benchmarks/startcost.py [--image tesson:latest] [--rounds 5] [--runs 4] [--build]

Measures, with hyperfine, in the same run:

  bare      docker run --rm IMAGE --version     (the baseline: the engine starting a container)
  plugin    docker tesson ps                     (shim + container + tesson listing groups)
  shim      docker tesson --version              (shim + container, tesson doing nothing)
  same      docker run --rm --init --network host -v SOCKET -v /sys:/sys:ro IMAGE --version
            (the container the shim starts, by hand, doing nothing: a stricter baseline, since
            the plugin's host network starts faster than the bare run's default bridge)

The commands are measured in rounds, their order rotated each round, so that a machine whose load
changes (other jobs, other tests) weighs on all of them alike. Reports the median and mean of every
command and the ratio plugin/bare of the medians; the target is at most 1.3x.

The plugin is installed in a temporary DOCKER_CONFIG; nothing of the user's is touched.
"""

from __future__ import annotations

import argparse
import json
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
TARGET = 1.3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default=os.environ.get("TESSON_IMAGE", "tesson:latest"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=4, help="hyperfine runs per command per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--build", action="store_true", help="build the image first (scripts/build-image)")
    args = ap.parse_args()

    if not shutil.which("hyperfine"):
        sys.exit("startcost: hyperfine is not installed (apt-get install hyperfine)")
    if args.build:
        subprocess.run([str(ROOT / "scripts" / "build-image"), "--tag", args.image], check=True,
                       stdout=subprocess.DEVNULL)
    if subprocess.run(["docker", "image", "inspect", args.image], capture_output=True).returncode:
        sys.exit(f"startcost: image {args.image} not found (make image, or pass --build)")

    with tempfile.TemporaryDirectory(prefix="tesson-startcost-") as tmp:
        env = dict(os.environ, DOCKER_CONFIG=tmp, TESSON_IMAGE=args.image)
        subprocess.run([str(ROOT / "docker-plugin" / "install")], env=env, check=True, stdout=subprocess.DEVNULL)
        commands = {
            "bare": f"docker run --rm {args.image} --version",
            "plugin": "docker tesson ps",
            "shim": "docker tesson --version",
            "same": f"docker run --rm --init --network host -v /var/run/docker.sock:/var/run/docker.sock "
                    f"-v /sys:/sys:ro {args.image} --version",
        }
        for cmd in commands.values():  # each must work before it is timed
            r = subprocess.run(cmd.split(), env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"startcost: '{cmd}' failed: {r.stderr.strip()}")
        times: dict[str, list[float]] = {name: [] for name in commands}
        order = list(commands)
        for rnd in range(args.rounds):
            order = order[1:] + order[:1]
            out = Path(tmp) / f"round{rnd}.json"
            hf = ["hyperfine", "-N", "--style", "none", "--warmup", str(args.warmup), "--runs", str(args.runs),
                  "--export-json", str(out)]
            for name in order:
                hf += ["-n", name, commands[name]]
            subprocess.run(hf, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for res in json.loads(out.read_text())["results"]:
                times[res["command"]].extend(res["times"])

    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"tesson start cost, {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
          f"image {args.image}; {args.rounds} rounds x {args.runs} runs each")
    print(f"{'command':8} {'median':>9} {'mean':>9} {'min':>9}  what")
    for n, cmd in commands.items():
        t = times[n]
        print(f"{n:8} {med[n] * 1000:7.0f}ms {statistics.mean(t) * 1000:7.0f}ms {min(t) * 1000:7.0f}ms  {cmd}")
    ratio = med["plugin"] / med["bare"]
    print(f"ratio plugin/bare (medians): {ratio:.2f}x  (target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'})")
    print(f"ratio shim/bare   (medians): {med['shim'] / med['bare']:.2f}x")
    print(f"ratio plugin/same (medians): {med['plugin'] / med['same']:.2f}x  (shim + tesson ps over the same container doing nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
