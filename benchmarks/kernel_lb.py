#!/usr/bin/env python3
"""The kernel front door against ``docker run -p`` and the nginx balancer (host network and bridge), in one interleaved run.

Four ways to publish a fast app (nginx answering ``GET /`` with a 3-byte body over keep-alive
connections, one worker per shard):

- ``kernel``: ``tesson run -u pu -n 2 -p 28391:8080 --lb kernel`` (nftables DNAT, round robin);
- ``nginx``:  ``tesson run -u pu -n 2 -p 28392:8080 --lb nginx`` (the nginx balancer container in
  the host's network: a fixed host port; nginx listens on it itself);
- ``nginxbr``: ``tesson run -u pu -n 2 -p 28394-28394:8080 --lb nginx`` (a one-port range keeps
  the balancer on the group's bridge network, published by Docker: docker-proxy on loopback,
  Docker's DNAT from outside; how every nginx balancer was published before);
- ``dockerp``: one container of the same shard, ``docker run -p 28393:8080 --cpuset-cpus 0``
  (Docker's own DNAT; docker-proxy on loopback), the reference.

Two places the client stands:

- ``ns``: a network namespace made here (``kb11-client``, a veth pair, 198.18.0.2 -> this host's
  198.18.0.1): an outside client, packets arriving on a host interface;
- ``lo``: this host, to ``127.0.0.1:PORT``.

Two loads with wrk: ``1conn`` (``-t1 -c1``, back to back: its p50 latency) and ``c32``
(``-t2 -c32``: requests/s). Rounds interleave every (load, place, door) so they share the
machine's noise. Printed: medians over the rounds and the ratios to ``dockerp`` at the same place.

    .venv/bin/python benchmarks/kernel_lb.py [--rounds 3] [--duration 5] [--image IMAGE]

Targets (issue 11, client namespace): p50(kernel)/p50(dockerp) <= 1.15 at one connection,
rps(kernel)/rps(dockerp) >= 0.9 at 32 connections. Needs root, wrk, ip; the image must carry nginx
and this tesson (scripts/build-image).
"""

from __future__ import annotations

import argparse
import datetime
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lb import SHARD_CONF, wrk

from tests import netlab

# door: (group, -p spec, host port, --lb)
GROUPS = {"kernel": ("bench11-k", "28391:8080", 28391, "kernel"), "nginx": ("bench11-n", "28392:8080", 28392, "nginx"),
          "nginxbr": ("bench11-nb", "28394-28394:8080", 28394, "nginx")}
DOCKERP = ("bench11-dockerp", 28393)
HOST_IF = "kb11h0"


def tesson(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tesson", *args], capture_output=True, text=True, cwd=ROOT)


def shard_entry() -> list[str]:
    return ["sh", "-c", "printf '%s' \"$SHARD_CONF\" > /tmp/shard.conf && exec nginx -e stderr -c /tmp/shard.conf"]


def cleanup() -> None:
    for group, *_ in GROUPS.values():
        tesson("stop", "-g", group, "--purge", "-t", "1")
    subprocess.run(["docker", "rm", "-f", DOCKERP[0]], capture_output=True)


def wait_answers(ns: str | None, url: str, what: str) -> None:
    deadline = time.monotonic() + 15
    while netlab.in_ns(ns, ["wrk", "-t1", "-c1", "-d1s", url]).returncode:
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} ({url}) does not answer")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--image", default=os.environ.get("TESSON_IMAGE") or "tesson:latest",
                    help="the tesson image (agent, balancer and nginx shard)")
    ap.add_argument("--only", default="", help="comma list of doors to measure (kernel,nginx,nginxbr; dockerp always)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    for tool in ("wrk", "ip"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")
    cleanup()
    lab = netlab.Lab("kb11")
    try:
        ns = netlab.client_pair(lab, HOST_IF)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "shard.json"
            cfg.write_text(json.dumps({"Entrypoint": shard_entry(), "Env": [f"SHARD_CONF={SHARD_CONF}"]}))
            for door, (group, spec, _, kind) in GROUPS.items():
                if a.only and door not in a.only.split(","):
                    continue
                r = tesson("run", "-g", group, "-u", "pu", "-n", "2", "-p", spec, "--lb", kind,
                           "--lb-image", a.image, "-c", str(cfg), a.image)
                if r.returncode:
                    raise SystemExit(f"tesson run --lb {kind} -p {spec} failed: {r.stderr.strip()}")
        r = subprocess.run(["docker", "run", "-d", "--name", DOCKERP[0], "-p", f"{DOCKERP[1]}:8080", "--cpuset-cpus", "0",
                            "-e", f"SHARD_CONF={SHARD_CONF}", "--entrypoint", "sh", a.image, "-c", shard_entry()[2]],
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"docker run -p failed: {r.stderr.strip()}")
        doors = {**{door: g[2] for door, g in GROUPS.items()}, "dockerp": DOCKERP[1]}
        if a.only:
            doors = {k: v for k, v in doors.items() if k in a.only.split(",") or k == "dockerp"}
        places = {"ns": (ns, "198.18.0.1"), "lo": (None, "127.0.0.1")}
        for door, port in doors.items():
            for place, (where, host) in places.items():
                wait_answers(where, f"http://{host}:{port}/", f"{door} from {place}")
        loads = {"1conn": (1, 1), "c32": (2, 32)}
        results: dict = {}
        for rnd in range(a.rounds):
            for load, (threads, conns) in loads.items():
                for place, (where, host) in places.items():
                    for door, port in doors.items():
                        url = f"http://{host}:{port}/"
                        res = wrk(url, threads, conns, a.duration, prefix=["ip", "netns", "exec", where] if where else ())
                        results.setdefault((load, place, door), []).append(res)
                        print(f"round {rnd + 1} {load:5} {place:2} {door:8} {res['rps']:9.0f} req/s  "
                              f"p50 {res['p50'] * 1000:7.1f} us  p99 {res['p99'] * 1000:7.1f} us {res['errors']}",
                              file=sys.stderr)
    finally:
        cleanup()
        lab.close()

    med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in results.items()}
    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} CPUs, {platform.release()}; "
          f"image {a.image}; wrk {a.duration}s x {a.rounds} rounds interleaved, medians")
    print(f"{'load':5} {'from':4} {'door':8} {'req/s':>9} {'p50 us':>8} {'p99 us':>8}   {'rps/dockerp':>11} {'p50/dockerp':>11}")
    for load in loads:
        for place in places:
            ref = med[(load, place, "dockerp")]
            for door in doors:
                m = med[(load, place, door)]
                print(f"{load:5} {place:4} {door:8} {m['rps']:9.0f} {m['p50'] * 1000:8.1f} {m['p99'] * 1000:8.1f}   "
                      f"{m['rps'] / ref['rps']:11.2f} {m['p50'] / ref['p50']:11.2f}")
    def paired(load: str, place: str, door: str, metric: str, base: str = "dockerp") -> float:
        """The median over rounds of door/base measured back to back in the same round: the
        machine's noise (other work on 2 CPUs) moves both alike, so this is steadier than a ratio
        of medians."""
        mine, ref = results[(load, place, door)], results[(load, place, base)]
        return statistics.median(m[metric] / r[metric] for m, r in zip(mine, ref))

    for door in doors:
        if door == "dockerp":
            continue
        print(f"{door}/dockerp, median of per-round ratios: " + "; ".join(
            f"{place} p50 1conn {paired('1conn', place, door, 'p50'):.2f}x, req/s c32 {paired('c32', place, door, 'rps'):.2f}x"
            for place in places))
    if "nginx" in doors and "nginxbr" in doors:
        print("nginx in the host network / on the bridge, median of per-round ratios: " + "; ".join(
            f"{place} p50 1conn {paired('1conn', place, 'nginx', 'p50', 'nginxbr'):.2f}x, "
            f"req/s 1conn {paired('1conn', place, 'nginx', 'rps', 'nginxbr'):.2f}x, "
            f"req/s c32 {paired('c32', place, 'nginx', 'rps', 'nginxbr'):.2f}x" for place in places))
    if "kernel" in doors:
        p50 = paired("1conn", "ns", "kernel", "p50")
        rps = paired("c32", "ns", "kernel", "rps")
        print(f"targets (client namespace, per-round ratios): p50 1 conn {p50:.2f}x docker run -p "
              f"(<= 1.15: {'met' if p50 <= 1.15 else 'NOT met'}); "
              f"req/s 32 conns {rps:.2f}x (>= 0.9: {'met' if rps >= 0.9 else 'NOT met'})")
    if a.json:
        print(json.dumps({"/".join(k): v for k, v in med.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
