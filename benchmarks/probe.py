"""The topology probe's cost (issue 16): a whole `tesson topology` process that reads this machine,
against the same through the daemon (facts compared, read locally), through a probe container
(first: the cache emptied) and through the cached answer.

    .venv/bin/python benchmarks/probe.py [--rounds 7] [--image tesson:latest]

Rounds are interleaved (local, facts, probe, cached in each), medians reported, and the outputs
checked equal (the tree, less the "Read from:" line). Needs the Docker daemon and the tesson image
carrying this tesson (make image).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESSON = [str(ROOT / ".venv" / "bin" / "python"), "-m", "tesson"]


def timed(argv: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"benchmark: {' '.join(argv)} failed: {r.stderr.strip()}")
    return dt, r.stdout


def tree(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if not line.startswith("Read from:"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--image", default=os.environ.get("TESSON_IMAGE", "tesson:latest"))
    opts = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="tesson-probe-bench-")
    base = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "TESSON_FSROOT", "TESSON_PROBE")}
    base.update(TESSON_CACHE_DIR=cache, TESSON_IMAGE=opts.image)
    daemon = dict(base, DOCKER_HOST="unix:///var/run/docker.sock")
    cases = {
        "local read (no daemon asked)": (TESSON + ["topology"], base, False),
        "daemon asked, host is this machine": (TESSON + ["topology"], daemon, False),
        "probe, first (cache emptied)": (TESSON + ["--probe", "topology"], daemon, True),
        "probe, cached": (TESSON + ["--probe", "topology"], daemon, False),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    outputs: dict[str, str] = {}
    try:
        timed(TESSON + ["--probe", "topology"], daemon)  # warm-up: image layers, page cache
        for _ in range(opts.rounds):
            for name, (argv, env, empty) in cases.items():
                if empty:
                    shutil.rmtree(os.path.join(cache, "probe"), ignore_errors=True)
                dt, out = timed(argv, env)
                times[name].append(dt)
                outputs[name] = tree(out)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if len(set(outputs.values())) != 1:
        sys.exit("benchmark: the four reads disagree")
    local = statistics.median(times["local read (no daemon asked)"])
    print(f"{opts.rounds} interleaved rounds, medians (min):")
    print("| read | time | vs local |\n| --- | --- | --- |")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1000:.0f} ms ({min(ts) * 1000:.0f}) | {med / local:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
