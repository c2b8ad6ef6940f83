#!/usr/bin/env python3
"""Start and stop a 16-shard group: tesson against plain `docker run` in series and with `xargs -P`.

All three start the same 16 pinned containers of the same small local image (busybox httpd, the
test suite's shard image, built here if missing) with the same CPU sets, and then stop and remove
them. Rounds are interleaved so the three share the machine's noise; medians are printed with the
ratios tesson/serial and tesson/parallel.

    .venv/bin/python benchmarks/start16.py [--rounds 3] [--shards 16] [--image IMAGE]

Targets (issue 3): tesson <= 0.5x the serial loop and <= 1.2x the parallel one.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench3"


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed(cmd: str) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"benchmark step failed: {cmd}\n{r.stderr.strip()}")
    return elapsed


def ensure_image(image: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests import conftest

    client = conftest.docker_api()
    if client is None:
        raise SystemExit("no Docker daemon answers")
    try:
        client.inspect_image(image)
    except Exception:
        repo, _, tag = image.partition(":")
        client.import_image_from_data(conftest._shard_image_tar(), repository=repo, tag=tag or "latest",
                                      changes=['CMD ["/start"]', "EXPOSE 8080/tcp"])


def plan(shards: int) -> list[str]:
    """The CPU sets tesson would use (-u pu), so the baselines pin exactly the same way."""
    import json

    r = subprocess.run([sys.executable, "-m", "tesson", "run", "--dry-run", "--format", "json", "-u", "pu",
                        "-n", str(shards), "img"], capture_output=True, text=True, check=True, cwd=ROOT)
    from tesson import cpulist

    return [cpulist.format(s["cpus"]) for s in json.loads(r.stdout)["shards"]]


def cleanup(docker: str, shards: int) -> None:
    names = " ".join(f"{PREFIX}-{k}-{i}" for k in ("t", "s", "p") for i in range(shards))
    subprocess.run(f"{docker} rm -f -v {names}", shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--image", default="tesson-test-shard:latest")
    ap.add_argument("--parallel", type=int, default=16, help="xargs -P (default: 16)")
    a = ap.parse_args()
    docker = shutil.which("docker") or "/usr/bin/docker"
    tesson = f"{sys.executable} -m tesson"
    n, img = a.shards, a.image
    ensure_image(img)
    cpus = plan(n)
    cleanup(docker, n)
    sh(f"{tesson} stop -g {PREFIX}-t --purge -t 10 2>/dev/null || true")
    lines = "\\n".join(f"{PREFIX}-p-{i} {c}" for i, c in enumerate(cpus))

    runners = {
        "tesson": (
            f"{tesson} run -g {PREFIX}-t -u pu -n {n} --lb none {img}",
            f"{tesson} stop -g {PREFIX}-t --purge -t 10",
        ),
        "serial": (
            "; ".join(f"{docker} run -d --name {PREFIX}-s-{i} --cpuset-cpus {c} {img}" for i, c in enumerate(cpus)) ,
            "; ".join(f"{docker} stop -t 10 {PREFIX}-s-{i} && {docker} rm -v {PREFIX}-s-{i}" for i in range(n)),
        ),
        "parallel": (
            f"printf '{lines}\\n' | xargs -P {a.parallel} -L 1 sh -c '{docker} run -d --name \"$0\" --cpuset-cpus \"$1\" {img}'",
            f"printf '{lines}\\n' | xargs -P {a.parallel} -L 1 sh -c '{docker} stop -t 10 \"$0\" && {docker} rm -v \"$0\"'",
        ),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"start": [], "stop": []} for k in runners}
    try:
        for r in range(a.rounds):
            for name, (start, stop) in runners.items():
                times[name]["start"].append(timed(start))
                time.sleep(0.5)
                times[name]["stop"].append(timed(stop))
                time.sleep(0.5)
            print(f"round {r + 1}/{a.rounds}: " + ", ".join(
                f"{k} {v['start'][-1]:.2f}s+{v['stop'][-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
    finally:
        cleanup(docker, n)
        subprocess.run(f"{tesson} stop -g {PREFIX}-t --purge 2>/dev/null", shell=True)

    med = {k: {p: statistics.median(v[p]) for p in ("start", "stop")} for k, v in times.items()}
    for k in med:
        med[k]["total"] = med[k]["start"] + med[k]["stop"]
    print(f"# start16: {n} pinned containers, {a.rounds} rounds, medians; {datetime.date.today()}, "
          f"{platform.node()}, {os.cpu_count()} CPUs, docker {docker}")
    print(f"{'':10} {'start':>8} {'stop+rm':>8} {'total':>8}")
    for k, v in med.items():
        print(f"{k:10} {v['start']:8.2f} {v['stop']:8.2f} {v['total']:8.2f}")
    for base, target in (("serial", 0.5), ("parallel", 1.2)):
        ratios = {p: med["tesson"][p] / med[base][p] for p in ("start", "stop", "total")}
        verdict = "meets" if ratios["total"] <= target else "MISSES"
        print(f"tesson/{base}: start {ratios['start']:.2f}x, stop {ratios['stop']:.2f}x, "
              f"total {ratios['total']:.2f}x (target <= {target}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
